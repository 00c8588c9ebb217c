/* jinja_builtins.c — the Jinja interpreter's built-ins (jinja.h; what they share with the
 * evaluator: jinja_internal.h): the str methods (Python's: split, strip, replace, format, the
 * is* predicates ...), the dict and list methods, Python's printf-style formatting (the % operator
 * and the format filter), the filters (tojson as transformers' json.dumps, map / select / sort
 * ...), the tests (`is defined`, `is divisibleby 3` ...), and the global functions (range,
 * namespace, dict, raise_exception, strftime_now) with loop.cycle. Each kind is a table, name ->
 * function (the tests with the arguments they take): adding a built-in is its function and a row.
 * The evaluator (jinja.c) looks names up here: builtin_method, apply_filter, apply_test,
 * builtin_global; the parser asks known_filter / known_test.
 *
 * Every built-in charges its work to the render's budget (list_push, sb_put and xalloc tick;
 * loops that repeat output call charge_repeat first) and fails through FAIL with a clear message,
 * so a template cannot make one run away. */
#include "chat/jinja_internal.h"
#include "base/os.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- string methods ---- */

enum { CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_CAPITALIZE, CASE_SWAP };

static uint32_t u_lower(ctx *c, uint32_t x) {
    if (x < 128) return (uint32_t)tolower((int)x);
    return c->loc ? os_towlower(c->loc, x) : x;
}
static uint32_t u_upper(ctx *c, uint32_t x) {
    if (x < 128) return (uint32_t)toupper((int)x);
    return c->loc ? os_towupper(c->loc, x) : x;
}
static bool u_cased(ctx *c, uint32_t x) { return u_lower(c, x) != x || u_upper(c, x) != x; }

/* Python's full case mappings that change the length (SpecialCasing.txt, unconditional). */
static const char *special_upper(uint32_t x) {
    switch (x) {
    case 0xDF: return "SS";
    case 0x149: return "\u02BCN";
    case 0x1F0: return "J\u030C";
    case 0x587: return "\u0535\u0552";
    case 0xFB00: return "FF";
    case 0xFB01: return "FI";
    case 0xFB02: return "FL";
    case 0xFB03: return "FFI";
    case 0xFB04: return "FFL";
    case 0xFB05:
    case 0xFB06: return "ST";
    default: return NULL;
    }
}

static value str_case(ctx *c, value s, int mode) {
    sbuf b = {0};
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.u.s.n;) {
        int l;
        uint32_t x = utf8_dec(s.u.s.p + i, s.u.s.n - i, &l), y = x;
        switch (mode) {
        case CASE_LOWER: y = u_lower(c, x); break;
        case CASE_UPPER: y = u_upper(c, x); break;
        case CASE_TITLE:
            y = prev_cased ? u_lower(c, x) : u_upper(c, x);
            prev_cased = u_cased(c, x);
            break;
        case CASE_CAPITALIZE: y = first ? u_upper(c, x) : u_lower(c, x); break;
        case CASE_SWAP: y = u_lower(c, x) != x ? u_lower(c, x) : u_upper(c, x); break;
        }
        first = false;
        const char *sp = NULL;
        if (mode == CASE_UPPER || (mode == CASE_SWAP && y == x)) sp = special_upper(x);
        if (mode == CASE_LOWER && x == 0x130) sp = "i\u0307";
        if (sp) sb_puts(&c->f, &b, sp);
        else {
            char enc[4];
            sb_put(&c->f, &b, enc, (size_t)utf8_enc(y, enc));
        }
        i += (size_t)l;
    }
    return sb_value(&b);
}

static bool in_chars(value chars, uint32_t x) {
    for (size_t i = 0; i < chars.u.s.n;) {
        int l;
        if (utf8_dec(chars.u.s.p + i, chars.u.s.n - i, &l) == x) return true;
        i += (size_t)l;
    }
    return false;
}

/* str.strip family; chars undefined/None = whitespace. */
static value str_strip(ctx *c, int line, value s, value chars, bool left, bool right) {
    bool ws = chars.t == V_UNDEF || chars.t == V_NONE;
    if (!ws && chars.t != V_STR) FAIL(c, line, "TypeError: strip arg must be None or str");
    const char *p = s.u.s.p;
    size_t a = 0, b = s.u.s.n;
    while (left && a < b) {
        int l;
        uint32_t x = utf8_dec(p + a, b - a, &l);
        if (ws ? !u_isspace(x) : !in_chars(chars, x)) break;
        a += (size_t)l;
    }
    while (right && b > a) {
        size_t j = b - 1;
        while (j > a && ((unsigned char)p[j] & 0xC0) == 0x80) j--;
        int l;
        uint32_t x = utf8_dec(p + j, b - j, &l);
        if (ws ? !u_isspace(x) : !in_chars(chars, x)) break;
        b = j;
    }
    return v_str(p + a, b - a);
}

static list *str_split(ctx *c, int line, value s, value sep, int64_t maxsplit) {
    list *r = list_new(&c->f, 4);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (sep.t == V_UNDEF || sep.t == V_NONE) {
        size_t i = 0;
        for (;;) {
            while (i < n) {
                int l;
                if (!u_isspace(utf8_dec(p + i, n - i, &l))) break;
                i += (size_t)l;
            }
            if (i >= n) break;
            if (maxsplit >= 0 && (int64_t)r->n == maxsplit) {
                value rest = str_strip(c, line, v_str(p + i, n - i), v_undef(NULL), false, true);
                list_push(&c->f, r, rest);
                break;
            }
            size_t j = i;
            while (j < n) {
                int l;
                if (u_isspace(utf8_dec(p + j, n - j, &l))) break;
                j += (size_t)l;
            }
            list_push(&c->f, r, v_str(p + i, j - i));
            i = j;
        }
        return r;
    }
    if (sep.t != V_STR) FAIL(c, line, "TypeError: must be str or None, not %s", v_typename(sep));
    if (!sep.u.s.n) FAIL(c, line, "ValueError: empty separator");
    size_t i = 0;
    for (;;) {
        const char *q = maxsplit >= 0 && (int64_t)r->n >= maxsplit ? NULL : memmem(p + i, n - i, sep.u.s.p, sep.u.s.n);
        if (!q) {
            list_push(&c->f, r, v_str(p + i, n - i));
            break;
        }
        list_push(&c->f, r, v_str(p + i, (size_t)(q - (p + i))));
        i = (size_t)(q - p) + sep.u.s.n;
    }
    return r;
}

static value str_replace(ctx *c, int line, value s, value old, value neu, int64_t count) {
    if (old.t != V_STR || neu.t != V_STR) FAIL(c, line, "TypeError: replace() arguments must be strings");
    sbuf b = {0};
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    int64_t done = 0;
    if (!old.u.s.n) { /* insert between every character */
        while (i <= n) {
            if (count < 0 || done < count) {
                sb_put(&c->f, &b, neu.u.s.p, neu.u.s.n);
                done++;
            } else {
                sb_put(&c->f, &b, p + i, n - i);
                break;
            }
            if (i == n) break;
            int l;
            utf8_dec(p + i, n - i, &l);
            sb_put(&c->f, &b, p + i, (size_t)l);
            i += (size_t)l;
        }
        return sb_value(&b);
    }
    for (;;) {
        const char *q = count >= 0 && done >= count ? NULL : memmem(p + i, n - i, old.u.s.p, old.u.s.n);
        if (!q) {
            sb_put(&c->f, &b, p + i, n - i);
            break;
        }
        sb_put(&c->f, &b, p + i, (size_t)(q - (p + i)));
        sb_put(&c->f, &b, neu.u.s.p, neu.u.s.n);
        i = (size_t)(q - p) + old.u.s.n;
        done++;
    }
    return sb_value(&b);
}

static value str_join(ctx *c, int line, value sep, list *items, const char *attr) {
    sbuf b = {0};
    for (size_t i = 0; i < items->n; i++) {
        if (i) sb_put(&c->f, &b, sep.u.s.p, sep.u.s.n);
        value v = items->v[i];
        if (attr) v = get_attr(c, line, v, attr);
        str_value(c, &b, v, 0);
    }
    return sb_value(&b);
}

/* str.format with {} / {0} / {name} fields (no format specs or conversions). */
static value str_format_method(ctx *c, int line, value fmt, args *a) {
    sbuf b = {0};
    const char *p = fmt.u.s.p;
    size_t n = fmt.u.s.n;
    int auto_idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
            sb_putc(&c->f, &b, '{');
            i++;
            continue;
        }
        if (p[i] == '}' && i + 1 < n && p[i + 1] == '}') {
            sb_putc(&c->f, &b, '}');
            i++;
            continue;
        }
        if (p[i] != '{') {
            sb_putc(&c->f, &b, p[i]);
            continue;
        }
        size_t j = i + 1;
        while (j < n && p[j] != '}') j++;
        if (j >= n) FAIL(c, line, "ValueError: unmatched '{' in format string");
        const char *f = p + i + 1;
        size_t fl = j - i - 1;
        if (memchr(f, ':', fl) || memchr(f, '!', fl) || memchr(f, '.', fl) || memchr(f, '[', fl))
            FAIL(c, line, "str.format: format specs, conversions and field access are not supported");
        value v;
        if (!fl) v = arg_get(a, auto_idx++, NULL);
        else if (isdigit((unsigned char)f[0])) v = arg_get(a, atoi(f), NULL);
        else v = arg_get(a, -1, xstrndup(&c->f, f, fl));
        if (v.t == V_UNDEF && !v.u.s.p) FAIL(c, line, "str.format: missing argument for field '{%.*s}'", (int)fl, f);
        str_value(c, &b, v, 0);
        i = j;
    }
    return sb_value(&b);
}

static bool str_all(ctx *c, value s, int kind) {
    if (!s.u.s.n) return false;
    bool any_cased = false;
    for (size_t i = 0; i < s.u.s.n;) {
        int l;
        uint32_t x = utf8_dec(s.u.s.p + i, s.u.s.n - i, &l);
        i += (size_t)l;
        switch (kind) {
        case 'd':
            if (!(c->loc ? os_iswclass(c->loc, x, OS_WDIGIT) : (x < 128 && isdigit((int)x)))) return false;
            break;
        case 'a':
            if (!(c->loc ? os_iswclass(c->loc, x, OS_WALPHA) : (x < 128 && isalpha((int)x)))) return false;
            break;
        case 'n':
            if (!(c->loc ? os_iswclass(c->loc, x, OS_WALNUM) : (x < 128 && isalnum((int)x)))) return false;
            break;
        case 's':
            if (!u_isspace(x)) return false;
            break;
        case 'l':
            if (u_upper(c, x) != x && u_lower(c, x) == x) any_cased = true;
            else if (u_lower(c, x) != x) return false;
            break;
        case 'u':
            if (u_lower(c, x) != x && u_upper(c, x) == x) any_cased = true;
            else if (u_upper(c, x) != x) return false;
            break;
        }
    }
    return kind == 'l' || kind == 'u' ? any_cased : true;
}

static bool str_affix(ctx *c, int line, value s, value arg, bool prefix) {
    if (arg.t == V_LIST && arg.u.l->tuple) {
        for (size_t i = 0; i < arg.u.l->n; i++)
            if (str_affix(c, line, s, arg.u.l->v[i], prefix)) return true;
        return false;
    }
    if (arg.t != V_STR)
        FAIL(c, line, "TypeError: %s first arg must be str or a tuple of str, not %s",
             prefix ? "startswith" : "endswith", v_typename(arg));
    if (arg.u.s.n > s.u.s.n) return false;
    return !memcmp(prefix ? s.u.s.p : s.u.s.p + s.u.s.n - arg.u.s.n, arg.u.s.p, arg.u.s.n);
}

static int64_t str_find(value s, value sub, bool reverse) {
    if (sub.u.s.n > s.u.s.n) return -1;
    const char *hit = NULL;
    if (!reverse) hit = memmem(s.u.s.p, s.u.s.n, sub.u.s.p, sub.u.s.n);
    else
        for (size_t i = s.u.s.n - sub.u.s.n + 1; i-- > 0;)
            if (!memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n)) {
                hit = s.u.s.p + i;
                break;
            }
    return hit ? (int64_t)utf8_count(s.u.s.p, (size_t)(hit - s.u.s.p)) : -1;
}

static value str_pad(ctx *c, int line, value s, args *a, int where) {
    int64_t width = arg_int(c, line, a, 0, "width", 0, "str padding");
    value fill = arg_get(a, 1, "fillchar");
    const char *fp = " ";
    size_t fl = 1;
    if (fill.t == V_STR) fp = fill.u.s.p, fl = fill.u.s.n;
    int64_t len = (int64_t)utf8_count(s.u.s.p, s.u.s.n);
    if (width <= len) return s;
    if (width > (1 << 24)) FAIL(c, line, "padding width too large");
    int64_t total = width - len, left = where == 'l' ? 0 : where == 'r' ? total : total / 2 + (total & width & 1);
    charge_repeat(&c->f, line, (uint64_t)total, fl, 1, "padding");
    sbuf b = {0};
    for (int64_t i = 0; i < left; i++) sb_put(&c->f, &b, fp, fl);
    sb_put(&c->f, &b, s.u.s.p, s.u.s.n);
    for (int64_t i = 0; i < total - left; i++) sb_put(&c->f, &b, fp, fl);
    return sb_value(&b);
}

static list *str_splitlines(ctx *c, value s, bool keepends) {
    list *r = list_new(&c->f, 4);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, start = 0, i = 0;
    while (i < n) {
        int l;
        uint32_t x = utf8_dec(p + i, n - i, &l);
        bool br = x == '\n' || x == '\r' || x == 0x0B || x == 0x0C || x == 0x1C || x == 0x1D || x == 0x1E ||
                  x == 0x85 || x == 0x2028 || x == 0x2029;
        if (!br) {
            i += (size_t)l;
            continue;
        }
        size_t end = i;
        i += (size_t)l;
        if (x == '\r' && i < n && p[i] == '\n') i++;
        list_push(&c->f, r, v_str(p + start, (keepends ? i : end) - start));
        start = i;
    }
    if (start < n) list_push(&c->f, r, v_str(p + start, n - start));
    return r;
}

/* The methods, one function each (a row of METHODS names it; some serve several names and tell
 * them apart by fn->name): fn->self is the receiver. */
static value m_affix(ctx *c, int line, func *fn, args *a) {
    if (a->npos > 1) FAIL(c, line, "%s: start/end arguments are not supported", fn->name);
    return v_bool(str_affix(c, line, fn->self, arg_get(a, 0, NULL), fn->name[0] == 's'));
}
static value m_strip(ctx *c, int line, func *fn, args *a) {
    const char *m = fn->name; /* strip, lstrip, rstrip */
    return str_strip(c, line, fn->self, arg_get(a, 0, "chars"), m[0] != 'r', m[0] != 'l');
}
static value m_split(ctx *c, int line, func *fn, args *a) {
    return v_list(str_split(c, line, fn->self, arg_get(a, 0, "sep"), arg_int(c, line, a, 1, "maxsplit", -1, fn->name)));
}
static value m_rsplit(ctx *c, int line, func *fn, args *a) {
    int64_t maxsplit = arg_int(c, line, a, 1, "maxsplit", -1, fn->name);
    value sep = arg_get(a, 0, "sep");
    list *all = str_split(c, line, fn->self, sep, -1);
    if (maxsplit < 0 || maxsplit >= (int64_t)all->n - 1) return v_list(all);
    if (sep.t != V_STR) FAIL(c, line, "rsplit(None, maxsplit) is not supported");
    size_t keep_from = all->n - (size_t)maxsplit;
    list *head = list_new(&c->f, keep_from);
    for (size_t i = 0; i < keep_from; i++) list_push(&c->f, head, all->v[i]);
    list *r = list_new(&c->f, (size_t)maxsplit + 1);
    list_push(&c->f, r, str_join(c, line, sep, head, NULL));
    for (size_t i = keep_from; i < all->n; i++) list_push(&c->f, r, all->v[i]);
    return v_list(r);
}
static value m_splitlines(ctx *c, int line, func *fn, args *a) {
    return v_list(str_splitlines(c, fn->self, v_truthy(arg_get(a, 0, "keepends"))));
}
static value m_replace(ctx *c, int line, func *fn, args *a) {
    return str_replace(c, line, fn->self, arg_get(a, 0, NULL), arg_get(a, 1, NULL),
                       arg_int(c, line, a, 2, "count", -1, fn->name));
}
static value m_lower(ctx *c, int line, func *fn, args *a) { return str_case(c, fn->self, CASE_LOWER); }
static value m_upper(ctx *c, int line, func *fn, args *a) { return str_case(c, fn->self, CASE_UPPER); }
static value m_title(ctx *c, int line, func *fn, args *a) { return str_case(c, fn->self, CASE_TITLE); }
static value m_capitalize(ctx *c, int line, func *fn, args *a) { return str_case(c, fn->self, CASE_CAPITALIZE); }
static value m_swapcase(ctx *c, int line, func *fn, args *a) { return str_case(c, fn->self, CASE_SWAP); }
static value m_find(ctx *c, int line, func *fn, args *a) {
    const char *m = fn->name; /* find, rfind, index, rindex */
    if (a->npos > 1) FAIL(c, line, "%s: start/end arguments are not supported", m);
    int64_t r = str_find(fn->self, arg_str(c, line, a, 0, NULL, m), m[0] == 'r');
    if (r < 0 && strstr(m, "index")) FAIL(c, line, "ValueError: substring not found");
    return v_int(r);
}
static value m_count(ctx *c, int line, func *fn, args *a) {
    value s = fn->self, sub = arg_str(c, line, a, 0, NULL, fn->name);
    if (!sub.u.s.n) return v_int((int64_t)utf8_count(s.u.s.p, s.u.s.n) + 1);
    int64_t k = 0;
    for (const char *p = s.u.s.p, *e = s.u.s.p + s.u.s.n; (p = memmem(p, (size_t)(e - p), sub.u.s.p, sub.u.s.n));
         p += sub.u.s.n)
        k++;
    return v_int(k);
}
static value m_join(ctx *c, int line, func *fn, args *a) {
    list *items = iter_list(c, line, arg_get(a, 0, NULL));
    for (size_t i = 0; i < items->n; i++)
        if (items->v[i].t != V_STR)
            FAIL(c, line, "TypeError: sequence item %zu: expected str instance, %s found", i, v_typename(items->v[i]));
    return str_join(c, line, fn->self, items, NULL);
}
static value m_format(ctx *c, int line, func *fn, args *a) { return str_format_method(c, line, fn->self, a); }
static value m_isdigit(ctx *c, int line, func *fn, args *a) { return v_bool(str_all(c, fn->self, 'd')); }
static value m_isalpha(ctx *c, int line, func *fn, args *a) { return v_bool(str_all(c, fn->self, 'a')); }
static value m_isalnum(ctx *c, int line, func *fn, args *a) { return v_bool(str_all(c, fn->self, 'n')); }
static value m_isspace(ctx *c, int line, func *fn, args *a) { return v_bool(str_all(c, fn->self, 's')); }
static value m_islower(ctx *c, int line, func *fn, args *a) { return v_bool(str_all(c, fn->self, 'l')); }
static value m_isupper(ctx *c, int line, func *fn, args *a) { return v_bool(str_all(c, fn->self, 'u')); }
static value m_remove_affix(ctx *c, int line, func *fn, args *a) {
    value s = fn->self, x = arg_str(c, line, a, 0, NULL, fn->name);
    bool pre = fn->name[6] == 'p'; /* removeprefix, removesuffix */
    if (!str_affix(c, line, s, x, pre)) return s;
    return pre ? v_str(s.u.s.p + x.u.s.n, s.u.s.n - x.u.s.n) : v_str(s.u.s.p, s.u.s.n - x.u.s.n);
}
/* center, ljust, rjust: the name's first letter is str_pad's where */
static value m_pad(ctx *c, int line, func *fn, args *a) { return str_pad(c, line, fn->self, a, fn->name[0]); }
static value m_zfill(ctx *c, int line, func *fn, args *a) {
    value s = fn->self;
    int64_t width = arg_int(c, line, a, 0, "width", 0, fn->name), len = (int64_t)utf8_count(s.u.s.p, s.u.s.n);
    if (width <= len) return s;
    if (width > (1 << 24)) FAIL(c, line, "zfill width too large");
    charge_repeat(&c->f, line, (uint64_t)(width - len), 1, 1, "zfill");
    sbuf b = {0};
    size_t k = s.u.s.n && (s.u.s.p[0] == '-' || s.u.s.p[0] == '+');
    sb_put(&c->f, &b, s.u.s.p, k);
    for (int64_t i = 0; i < width - len; i++) sb_putc(&c->f, &b, '0');
    sb_put(&c->f, &b, s.u.s.p + k, s.u.s.n - k);
    return sb_value(&b);
}

static list *dict_items(ctx *c, dict *d) {
    list *r = list_new(&c->f, d->n);
    for (size_t i = 0; i < d->n; i++) {
        list *t = list_new(&c->f, 2);
        t->tuple = true;
        list_push(&c->f, t, d->k[i]);
        list_push(&c->f, t, d->v[i]);
        list_push(&c->f, r, v_list(t));
    }
    return r;
}

static value m_dict_get(ctx *c, int line, func *fn, args *a) {
    dict *d = fn->self.u.d;
    long i = dict_find(d, arg_get(a, 0, NULL));
    if (i >= 0) return d->v[i];
    return a->npos > 1 ? a->pos[1] : v_none();
}
static value m_dict_items(ctx *c, int line, func *fn, args *a) { return v_list(dict_items(c, fn->self.u.d)); }
/* keys, values */
static value m_dict_keys(ctx *c, int line, func *fn, args *a) {
    dict *d = fn->self.u.d;
    list *r = list_new(&c->f, d->n);
    for (size_t i = 0; i < d->n; i++) list_push(&c->f, r, !strcmp(fn->name, "keys") ? d->k[i] : d->v[i]);
    return v_list(r);
}

/* index, count */
static value m_list_find(ctx *c, int line, func *fn, args *a) {
    list *l = fn->self.u.l;
    value x = arg_get(a, 0, NULL);
    int64_t k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (v_eq(l->v[i], x)) {
            if (!strcmp(fn->name, "index")) return v_int((int64_t)i);
            k++;
        }
    if (!strcmp(fn->name, "index")) FAIL(c, line, "ValueError: value is not in list");
    return v_int(k);
}

/* The methods of each type: adding one is a row (its function above). */
static const struct method_row {
    vtype type;
    const char *name;
    builtin_fn fn;
} METHODS[] = {
    {V_STR, "startswith", m_affix},
    {V_STR, "endswith", m_affix},
    {V_STR, "strip", m_strip},
    {V_STR, "lstrip", m_strip},
    {V_STR, "rstrip", m_strip},
    {V_STR, "split", m_split},
    {V_STR, "rsplit", m_rsplit},
    {V_STR, "splitlines", m_splitlines},
    {V_STR, "replace", m_replace},
    {V_STR, "lower", m_lower},
    {V_STR, "upper", m_upper},
    {V_STR, "title", m_title},
    {V_STR, "capitalize", m_capitalize},
    {V_STR, "swapcase", m_swapcase},
    {V_STR, "find", m_find},
    {V_STR, "rfind", m_find},
    {V_STR, "index", m_find},
    {V_STR, "rindex", m_find},
    {V_STR, "count", m_count},
    {V_STR, "join", m_join},
    {V_STR, "format", m_format},
    {V_STR, "isdigit", m_isdigit},
    {V_STR, "isalpha", m_isalpha},
    {V_STR, "isalnum", m_isalnum},
    {V_STR, "isspace", m_isspace},
    {V_STR, "islower", m_islower},
    {V_STR, "isupper", m_isupper},
    {V_STR, "isnumeric", m_isdigit},
    {V_STR, "isdecimal", m_isdigit},
    {V_STR, "removeprefix", m_remove_affix},
    {V_STR, "removesuffix", m_remove_affix},
    {V_STR, "center", m_pad},
    {V_STR, "ljust", m_pad},
    {V_STR, "rjust", m_pad},
    {V_STR, "zfill", m_zfill},
    {V_DICT, "get", m_dict_get},
    {V_DICT, "items", m_dict_items},
    {V_DICT, "keys", m_dict_keys},
    {V_DICT, "values", m_dict_keys},
    {V_LIST, "index", m_list_find},
    {V_LIST, "count", m_list_find},
};

bool builtin_method(ctx *c, value obj, const char *name, value *out) {
    for (size_t i = 0; i < sizeof METHODS / sizeof *METHODS; i++)
        if (METHODS[i].type == obj.t && !strcmp(METHODS[i].name, name)) {
            *out = v_func(c, METHODS[i].name, METHODS[i].fn, obj);
            return true;
        }
    return false;
}

/* ---- printf-style formatting: "%s" % x and the format filter ---- */

value py_format(ctx *c, int line, value fmt, value argv) {
    list *items;
    dict *named = argv.t == V_DICT ? argv.u.d : NULL;
    if (argv.t == V_LIST && argv.u.l->tuple) items = argv.u.l;
    else {
        items = list_new(&c->f, 1);
        list_push(&c->f, items, argv);
    }
    size_t next = 0;
    sbuf b = {0};
    const char *p = fmt.u.s.p;
    size_t n = fmt.u.s.n;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            sb_putc(&c->f, &b, p[i]);
            continue;
        }
        if (++i >= n) FAIL(c, line, "ValueError: incomplete format");
        if (p[i] == '%') {
            sb_putc(&c->f, &b, '%');
            continue;
        }
        value v;
        bool have = false;
        if (p[i] == '(') {
            size_t j = i + 1;
            while (j < n && p[j] != ')') j++;
            if (j >= n || !named) FAIL(c, line, "TypeError: format requires a mapping");
            long k = dict_find_str(named, p + i + 1, j - i - 1);
            if (k < 0) FAIL(c, line, "KeyError: '%.*s'", (int)(j - i - 1), p + i + 1);
            v = named->v[k];
            have = true;
            i = j + 1;
        }
        char spec[32];
        size_t sl = 0;
        spec[sl++] = '%';
        while (i < n && strchr("-+ #0", p[i]) && sl < 8) spec[sl++] = p[i++];
        while (i < n && isdigit((unsigned char)p[i]) && sl < 16) spec[sl++] = p[i++];
        if (i < n && p[i] == '.') {
            spec[sl++] = p[i++];
            while (i < n && isdigit((unsigned char)p[i]) && sl < 24) spec[sl++] = p[i++];
        }
        if (i >= n) FAIL(c, line, "ValueError: incomplete format");
        char conv = p[i];
        if (!have) {
            if (named && !(argv.t == V_LIST)) v = argv;
            else {
                if (next >= items->n) FAIL(c, line, "TypeError: not enough arguments for format string");
                v = items->v[next++];
            }
        }
        char out[512];
        switch (conv) {
        case 's':
        case 'r': {
            sbuf t = {0};
            if (conv == 's') str_value(c, &t, v, 0);
            else repr_value(c, &t, v, 0);
            spec[sl++] = 's';
            spec[sl] = 0;
            if (sl == 2) sb_put(&c->f, &b, t.p, t.n);
            else {
                snprintf(out, sizeof out, spec, t.n ? t.p : "");
                sb_puts(&c->f, &b, out);
            }
            break;
        }
        case 'd':
        case 'i':
        case 'x':
        case 'X':
        case 'o':
            if (!v_num(v)) FAIL(c, line, "TypeError: %%%c format: a number is required, not %s", conv, v_typename(v));
            spec[sl++] = 'l', spec[sl++] = 'l', spec[sl++] = conv == 'i' ? 'd' : conv, spec[sl] = 0;
            if (v.t == V_FLOAT && !(isfinite(v.u.f) && fabs(v.u.f) < 9.2e18))
                FAIL(c, line, "OverflowError: %%%c format of %g does not fit a 64-bit integer", conv, v.u.f);
            snprintf(out, sizeof out, spec, (long long)(v.t == V_FLOAT ? (int64_t)v.u.f : v_asi(v)));
            sb_puts(&c->f, &b, out);
            break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
            if (!v_num(v)) FAIL(c, line, "TypeError: must be real number, not %s", v_typename(v));
            spec[sl++] = conv, spec[sl] = 0;
            snprintf(out, sizeof out, spec, v_asf(v));
            sb_puts(&c->f, &b, out);
            break;
        default: FAIL(c, line, "ValueError: unsupported format character '%c'", conv);
        }
    }
    if (!named && next < items->n) FAIL(c, line, "TypeError: not all arguments converted during string formatting");
    return sb_value(&b);
}

/* ---- filters ---- */

typedef value (*filter_fn)(ctx *c, int line, value in, args *a);

static value f_tojson(ctx *c, int line, value in, args *a) {
    json_opts o = {NULL, ", ", ": ", false, false};
    o.ensure_ascii = v_truthy(arg_get(a, 0, "ensure_ascii"));
    value ind = arg_get(a, 1, "indent");
    if (ind.t == V_INT || ind.t == V_BOOL) {
        int64_t k = v_asi(ind);
        if (k > 64) k = 64;
        char *s = xzalloc(&c->f, (size_t)(k > 0 ? k : 0) + 1);
        for (int64_t i = 0; i < k; i++) s[i] = ' ';
        o.indent = s;
    } else if (ind.t == V_STR) {
        o.indent = xstrndup(&c->f, ind.u.s.p, ind.u.s.n);
    } else if (ind.t != V_NONE && ind.t != V_UNDEF) {
        FAIL(c, line, "TypeError: tojson indent must be an int or a string");
    }
    if (o.indent) o.item_sep = ",";
    value sep = arg_get(a, 2, "separators");
    if (sep.t == V_LIST) {
        if (sep.u.l->n != 2 || sep.u.l->v[0].t != V_STR || sep.u.l->v[1].t != V_STR)
            FAIL(c, line, "tojson separators must be a pair of strings");
        o.item_sep = xstrndup(&c->f, sep.u.l->v[0].u.s.p, sep.u.l->v[0].u.s.n);
        o.key_sep = xstrndup(&c->f, sep.u.l->v[1].u.s.p, sep.u.l->v[1].u.s.n);
    }
    o.sort_keys = v_truthy(arg_get(a, 3, "sort_keys"));
    sbuf b = {0};
    json_value(c, line, &b, in, &o, 0);
    return sb_value(&b);
}

static value need_str(ctx *c, int line, value in) {
    if (in.t == V_UNDEF && in.u.s.p) return v_str("", 0);
    return to_str(c, in);
}

static value f_trim(ctx *c, int line, value in, args *a) {
    return str_strip(c, line, need_str(c, line, in), arg_get(a, 0, "chars"), true, true);
}
static value f_length(ctx *c, int line, value in, args *a) { return v_int(v_len(c, line, in)); }
static value f_string(ctx *c, int line, value in, args *a) { return to_str(c, in); }
static value f_lower(ctx *c, int line, value in, args *a) { return str_case(c, need_str(c, line, in), CASE_LOWER); }
static value f_upper(ctx *c, int line, value in, args *a) { return str_case(c, need_str(c, line, in), CASE_UPPER); }
static value f_title(ctx *c, int line, value in, args *a) { return str_case(c, need_str(c, line, in), CASE_TITLE); }
static value f_capitalize(ctx *c, int line, value in, args *a) {
    return str_case(c, need_str(c, line, in), CASE_CAPITALIZE);
}
static value f_safe(ctx *c, int line, value in, args *a) { return in; }

static value f_default(ctx *c, int line, value in, args *a) {
    bool boolean = v_truthy(arg_get(a, 1, "boolean"));
    if (in.t == V_UNDEF || (boolean && !v_truthy(in)))
        return arg_has(a, 0, "default_value") ? arg_get(a, 0, "default_value") : v_str("", 0);
    return in;
}

static value f_join(ctx *c, int line, value in, args *a) {
    value sep = arg_get(a, 0, "d");
    if (sep.t == V_UNDEF) sep = v_str("", 0);
    sep = to_str(c, sep);
    value attr = arg_get(a, 1, "attribute");
    return str_join(c, line, sep, iter_list(c, line, in),
                    attr.t == V_STR ? xstrndup(&c->f, attr.u.s.p, attr.u.s.n) : NULL);
}

static value f_items(ctx *c, int line, value in, args *a) {
    if (in.t == V_UNDEF) return v_list(list_new(&c->f, 1));
    if (in.t != V_DICT && in.t != V_NS)
        FAIL(c, line, "TypeError: can only get item pairs from a mapping, not %s", v_typename(in));
    return v_list(dict_items(c, in.u.d));
}

static value f_first(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in);
    return l->n ? l->v[0] : v_undef_msg(c, "No first item, sequence was empty.");
}

static value f_last(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in);
    return l->n ? l->v[l->n - 1] : v_undef_msg(c, "No last item, sequence was empty.");
}

static value f_list(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in), *r = list_new(&c->f, l->n);
    for (size_t i = 0; i < l->n; i++) list_push(&c->f, r, l->v[i]);
    return v_list(r);
}

static value f_reverse(ctx *c, int line, value in, args *a) {
    if (in.t == V_STR) {
        value one = v_int(-1);
        return do_slice(c, line, in, v_none(), v_none(), one);
    }
    list *l = iter_list(c, line, in), *r = list_new(&c->f, l->n);
    for (size_t i = l->n; i-- > 0;) list_push(&c->f, r, l->v[i]);
    return v_list(r);
}

static value f_replace(ctx *c, int line, value in, args *a) {
    return str_replace(c, line, need_str(c, line, in), to_str(c, arg_get(a, 0, "old")), to_str(c, arg_get(a, 1, "new")),
                       arg_int(c, line, a, 2, "count", -1, "replace"));
}

static value f_abs(ctx *c, int line, value in, args *a) {
    if (in.t == V_FLOAT) return v_float(fabs(in.u.f));
    if (in.t == V_INT || in.t == V_BOOL) {
        if (v_asi(in) == INT64_MIN) FAIL(c, line, "integer overflow");
        return v_int(v_asi(in) < 0 ? -v_asi(in) : v_asi(in));
    }
    FAIL(c, line, "TypeError: bad operand type for abs(): '%s'", v_typename(in));
}

static value f_int(ctx *c, int line, value in, args *a) {
    value dflt = arg_has(a, 0, "default") ? arg_get(a, 0, "default") : v_int(0);
    if (in.t == V_INT || in.t == V_BOOL) return v_int(v_asi(in));
    if (in.t == V_FLOAT) return isfinite(in.u.f) && fabs(in.u.f) < 9.2e18 ? v_int((int64_t)in.u.f) : dflt;
    if (in.t == V_STR) {
        int64_t base = arg_int(c, line, a, 1, "base", 10, "int");
        char *s = xstrndup(&c->f, in.u.s.p, in.u.s.n), *e;
        /* strtoll knows the bases 0 and 2..36 only (for another it leaves e unset); for another,
         * Python's int() raises and jinja2's filter reads the text as a float, as below */
        if (base == 0 || (base >= 2 && base <= 36)) {
            errno = 0;
            long long v = strtoll(s, &e, (int)base);
            bool digits = e != s; /* e stays at s when no digit was read (spaces alone: the default) */
            while (*e && isspace((unsigned char)*e)) e++;
            if (digits && !*e && !errno) return v_int(v);
        }
        double d = strtod(s, &e);
        bool read = e != s;
        while (*e && isspace((unsigned char)*e)) e++;
        if (read && !*e && isfinite(d) && fabs(d) < 9.2e18) return v_int((int64_t)d);
    }
    return dflt;
}

static value f_float(ctx *c, int line, value in, args *a) {
    value dflt = arg_has(a, 0, "default") ? arg_get(a, 0, "default") : v_float(0);
    if (v_num(in)) return v_float(v_asf(in));
    if (in.t == V_STR) {
        char *s = xstrndup(&c->f, in.u.s.p, in.u.s.n), *e;
        double d = strtod(s, &e);
        bool read = e != s;
        while (*e && isspace((unsigned char)*e)) e++;
        if (read && !*e) return v_float(d);
    }
    return dflt;
}

static value f_round(ctx *c, int line, value in, args *a) {
    int64_t prec = arg_int(c, line, a, 0, "precision", 0, "round");
    value mv = arg_get(a, 1, "method");
    const char *method = mv.t == V_STR ? xstrndup(&c->f, mv.u.s.p, mv.u.s.n) : "common";
    if (!v_num(in)) FAIL(c, line, "TypeError: round needs a number, not %s", v_typename(in));
    if (prec > 300) prec = 300;
    if (prec < -300) prec = -300;
    double x = v_asf(in), m = pow(10.0, (double)prec), y = x * m;
    if (!strcmp(method, "common")) {
        /* Python round(): half to even on the exact decimal value; printing it back gives
         * exactly what Python gets for reasonable precisions */
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", prec > 0 ? (int)prec : 0, prec >= 0 ? x : x * m);
        y = strtod(buf, NULL);
        return v_float(prec >= 0 ? y : y / m);
    }
    if (!strcmp(method, "ceil")) return v_float(ceil(y) / m);
    if (!strcmp(method, "floor")) return v_float(floor(y) / m);
    FAIL(c, line, "round: method must be 'common', 'ceil' or 'floor'");
}

static value f_indent(ctx *c, int line, value in, args *a) {
    value w = arg_get(a, 0, "width");
    value s = need_str(c, line, in);
    value ind;
    if (w.t == V_STR) ind = w;
    else {
        int64_t k = w.t == V_UNDEF ? 4 : arg_int(c, line, a, 0, "width", 4, "indent");
        if (k > 256) k = 256;
        char *sp = xzalloc(&c->f, (size_t)(k > 0 ? k : 0) + 1);
        for (int64_t i = 0; i < k; i++) sp[i] = ' ';
        ind = v_cstr(sp);
    }
    bool first = v_truthy(arg_get(a, 1, "first")), blank = v_truthy(arg_get(a, 2, "blank"));
    value sn = str_concat(c, s, v_str("\n", 1)); /* jinja2 appends a newline before splitting */
    list *lines = str_splitlines(c, sn, false);
    sbuf b = {0};
    if (first) sb_put(&c->f, &b, ind.u.s.p, ind.u.s.n);
    for (size_t i = 0; i < lines->n; i++) {
        value ln = lines->v[i];
        if (i) {
            sb_putc(&c->f, &b, '\n');
            if (blank || ln.u.s.n) sb_put(&c->f, &b, ind.u.s.p, ind.u.s.n);
        }
        sb_put(&c->f, &b, ln.u.s.p, ln.u.s.n);
    }
    return sb_value(&b);
}

static value f_escape(ctx *c, int line, value in, args *a) {
    value s = to_str(c, in);
    sbuf b = {0};
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        switch (ch) {
        case '&': sb_puts(&c->f, &b, "&amp;"); break;
        case '<': sb_puts(&c->f, &b, "&lt;"); break;
        case '>': sb_puts(&c->f, &b, "&gt;"); break;
        case '"': sb_puts(&c->f, &b, "&#34;"); break;
        case '\'': sb_puts(&c->f, &b, "&#39;"); break;
        default: sb_putc(&c->f, &b, ch);
        }
    }
    return sb_value(&b);
}

/* args without the first `skip` positionals, for map/select passing the rest on */
static args args_shift(const args *a, int skip) {
    args r = *a;
    r.npos = a->npos > skip ? a->npos - skip : 0;
    r.pos = a->npos > skip ? a->pos + skip : a->pos;
    return r;
}

static value attr_path(ctx *c, int line, value v, value attr) {
    if (attr.t == V_INT) return get_item(c, line, v, attr);
    const char *p = attr.u.s.p, *e = p + attr.u.s.n;
    while (p <= e) {
        const char *dot = memchr(p, '.', (size_t)(e - p));
        if (!dot) dot = e;
        value key = v_str(p, (size_t)(dot - p));
        bool digits = dot > p;
        for (const char *q = p; q < dot; q++) digits = digits && isdigit((unsigned char)*q);
        v = digits ? get_item(c, line, v, v_int(atoll(xstrndup(&c->f, p, (size_t)(dot - p)))))
                   : get_item(c, line, v, key);
        p = dot + 1;
    }
    return v;
}

static value f_map(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in), *r = list_new(&c->f, l->n);
    value attr = arg_get(a, -1, "attribute");
    if (attr.t == V_STR || attr.t == V_INT) {
        value dflt = arg_get(a, -1, "default");
        for (size_t i = 0; i < l->n; i++) {
            value v = attr_path(c, line, l->v[i], attr);
            list_push(&c->f, r, v.t == V_UNDEF && arg_has(a, -1, "default") ? dflt : v);
        }
        return v_list(r);
    }
    value name = arg_str(c, line, a, 0, NULL, "map");
    args rest = args_shift(a, 1);
    const char *fname = xstrndup(&c->f, name.u.s.p, name.u.s.n);
    for (size_t i = 0; i < l->n; i++) list_push(&c->f, r, apply_filter(c, line, fname, l->v[i], &rest));
    return v_list(r);
}

static value select_impl(ctx *c, int line, value in, args *a, bool by_attr, bool keep) {
    list *l = iter_list(c, line, in), *r = list_new(&c->f, l->n);
    int base = by_attr ? 1 : 0;
    value attr = by_attr ? arg_str(c, line, a, 0, NULL, "selectattr") : v_none();
    value tname = arg_get(a, base, NULL);
    args rest = args_shift(a, base + 1);
    const char *tn = tname.t == V_STR ? xstrndup(&c->f, tname.u.s.p, tname.u.s.n) : NULL;
    for (size_t i = 0; i < l->n; i++) {
        value v = by_attr ? attr_path(c, line, l->v[i], attr) : l->v[i];
        bool ok = tn ? apply_test(c, line, tn, v, &rest) : v_truthy(v);
        if (ok == keep) list_push(&c->f, r, l->v[i]);
    }
    return v_list(r);
}

static value f_select(ctx *c, int line, value in, args *a) { return select_impl(c, line, in, a, false, true); }
static value f_reject(ctx *c, int line, value in, args *a) { return select_impl(c, line, in, a, false, false); }
static value f_selectattr(ctx *c, int line, value in, args *a) { return select_impl(c, line, in, a, true, true); }
static value f_rejectattr(ctx *c, int line, value in, args *a) { return select_impl(c, line, in, a, true, false); }

/* Stable merge sort by key values (errors can unwind from the comparison). */
static void sort_values(ctx *c, int line, value *items, value *keys, size_t n, bool fold, bool reverse) {
    if (n < 2) return;
    value *ti = xalloc(&c->f, n * sizeof *ti), *tk = xalloc(&c->f, n * sizeof *tk);
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int r = v_cmp(c, line, keys[j], keys[i], fold);
                bool take_right = reverse ? r > 0 : r < 0;
                if (take_right) ti[k] = items[j], tk[k++] = keys[j++];
                else ti[k] = items[i], tk[k++] = keys[i++];
            }
            while (i < mid) ti[k] = items[i], tk[k++] = keys[i++];
            while (j < hi) ti[k] = items[j], tk[k++] = keys[j++];
        }
        memcpy(items, ti, n * sizeof *ti);
        memcpy(keys, tk, n * sizeof *tk);
    }
}

static value f_sort(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in), *r = list_new(&c->f, l->n);
    bool reverse = v_truthy(arg_get(a, 0, "reverse")), cs = v_truthy(arg_get(a, 1, "case_sensitive"));
    value attr = arg_get(a, 2, "attribute");
    value *keys = xalloc(&c->f, (l->n + 1) * sizeof *keys);
    for (size_t i = 0; i < l->n; i++) {
        list_push(&c->f, r, l->v[i]);
        keys[i] = attr.t == V_STR || attr.t == V_INT ? attr_path(c, line, l->v[i], attr) : l->v[i];
    }
    sort_values(c, line, r->v, keys, r->n, !cs, reverse);
    return v_list(r);
}

static value f_dictsort(ctx *c, int line, value in, args *a) {
    if (in.t != V_DICT) FAIL(c, line, "TypeError: dictsort needs a mapping, not %s", v_typename(in));
    bool cs = v_truthy(arg_get(a, 0, "case_sensitive")), reverse = v_truthy(arg_get(a, 2, "reverse"));
    value by = arg_get(a, 1, "by");
    bool by_value = by.t == V_STR && by.u.s.n == 5 && !memcmp(by.u.s.p, "value", 5);
    list *r = dict_items(c, in.u.d);
    value *keys = xalloc(&c->f, (r->n + 1) * sizeof *keys);
    for (size_t i = 0; i < r->n; i++) keys[i] = r->v[i].u.l->v[by_value ? 1 : 0];
    sort_values(c, line, r->v, keys, r->n, !cs, reverse);
    return v_list(r);
}

static value f_unique(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in), *r = list_new(&c->f, l->n), *seen = list_new(&c->f, l->n);
    bool cs = v_truthy(arg_get(a, 0, "case_sensitive"));
    value attr = arg_get(a, 1, "attribute");
    for (size_t i = 0; i < l->n; i++) {
        value k = attr.t == V_STR || attr.t == V_INT ? attr_path(c, line, l->v[i], attr) : l->v[i];
        if (!cs && k.t == V_STR) k = str_case(c, k, CASE_LOWER);
        bool dup = false;
        for (size_t j = 0; j < seen->n && !dup; j++) dup = v_eq(seen->v[j], k);
        if (!dup) list_push(&c->f, seen, k), list_push(&c->f, r, l->v[i]);
    }
    return v_list(r);
}

static value f_sum(ctx *c, int line, value in, args *a) {
    list *l = iter_list(c, line, in);
    value attr = arg_get(a, 0, "attribute"), acc = arg_has(a, 1, "start") ? arg_get(a, 1, "start") : v_int(0);
    for (size_t i = 0; i < l->n; i++)
        acc =
            binop(c, line, '+', acc, attr.t == V_STR || attr.t == V_INT ? attr_path(c, line, l->v[i], attr) : l->v[i]);
    return acc;
}

static value minmax(ctx *c, int line, value in, args *a, int sign) {
    list *l = iter_list(c, line, in);
    bool cs = v_truthy(arg_get(a, 0, "case_sensitive"));
    value attr = arg_get(a, 1, "attribute");
    if (!l->n) return v_undef_msg(c, "No aggregated item, sequence was empty.");
    size_t best = 0;
    value bk = attr.t == V_STR || attr.t == V_INT ? attr_path(c, line, l->v[0], attr) : l->v[0];
    for (size_t i = 1; i < l->n; i++) {
        value k = attr.t == V_STR || attr.t == V_INT ? attr_path(c, line, l->v[i], attr) : l->v[i];
        if (v_cmp(c, line, k, bk, !cs) * sign > 0) best = i, bk = k;
    }
    return l->v[best];
}
static value f_min(ctx *c, int line, value in, args *a) { return minmax(c, line, in, a, -1); }
static value f_max(ctx *c, int line, value in, args *a) { return minmax(c, line, in, a, 1); }

static value f_attr(ctx *c, int line, value in, args *a) {
    value n = arg_str(c, line, a, 0, "name", "attr");
    return get_attr(c, line, in, xstrndup(&c->f, n.u.s.p, n.u.s.n));
}

static value f_format(ctx *c, int line, value in, args *a) {
    value s = need_str(c, line, in);
    if (a->nkw) {
        dict *d = dict_new(&c->f, (size_t)a->nkw);
        for (int i = 0; i < a->nkw; i++) dict_set(&c->f, d, v_cstr(a->kwn[i]), a->kwv[i]);
        return py_format(c, line, s, v_dict(d));
    }
    list *t = list_new(&c->f, (size_t)a->npos + 1);
    t->tuple = true;
    for (int i = 0; i < a->npos; i++) list_push(&c->f, t, a->pos[i]);
    return py_format(c, line, s, v_list(t));
}

static value f_center(ctx *c, int line, value in, args *a) {
    args b = *a;
    value w = arg_has(a, 0, "width") ? arg_get(a, 0, "width") : v_int(80);
    b.pos = &w, b.npos = 1, b.nkw = 0;
    return str_pad(c, line, need_str(c, line, in), &b, 'c');
}

static value f_wordcount(ctx *c, int line, value in, args *a) {
    return v_int((int64_t)str_split(c, line, need_str(c, line, in), v_none(), -1)->n);
}

static value f_batch(ctx *c, int line, value in, args *a) {
    int64_t size = arg_int(c, line, a, 0, "linecount", 1, "batch");
    if (size < 1) FAIL(c, line, "batch size must be positive");
    value fill = arg_get(a, 1, "fill_with");
    list *l = iter_list(c, line, in), *r = list_new(&c->f, 4), *cur = NULL;
    for (size_t i = 0; i < l->n; i++) {
        if (!cur || (int64_t)cur->n == size)
            cur = list_new(&c->f, (size_t)(size < (int64_t)(l->n - i) ? size : (int64_t)(l->n - i))),
            list_push(&c->f, r, v_list(cur));
        list_push(&c->f, cur, l->v[i]);
    }
    if (cur && arg_has(a, 1, "fill_with") && (int64_t)cur->n < size) { /* charged before the loop */
        charge_repeat(&c->f, line, (uint64_t)(size - (int64_t)cur->n), 1, sizeof(value), "batch fill");
        while ((int64_t)cur->n < size) list_push(&c->f, cur, fill);
    }
    return v_list(r);
}

/* The filters: adding one is a row. */
static const struct {
    const char *name;
    filter_fn fn;
} FILTERS[] = {
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"length", f_length},
    {"count", f_length},
    {"string", f_string},
    {"lower", f_lower},
    {"upper", f_upper},
    {"title", f_title},
    {"capitalize", f_capitalize},
    {"default", f_default},
    {"d", f_default},
    {"join", f_join},
    {"items", f_items},
    {"first", f_first},
    {"last", f_last},
    {"list", f_list},
    {"reverse", f_reverse},
    {"replace", f_replace},
    {"abs", f_abs},
    {"int", f_int},
    {"float", f_float},
    {"round", f_round},
    {"indent", f_indent},
    {"safe", f_safe},
    {"escape", f_escape},
    {"e", f_escape},
    {"forceescape", f_escape},
    {"map", f_map},
    {"select", f_select},
    {"reject", f_reject},
    {"selectattr", f_selectattr},
    {"rejectattr", f_rejectattr},
    {"sort", f_sort},
    {"dictsort", f_dictsort},
    {"unique", f_unique},
    {"sum", f_sum},
    {"min", f_min},
    {"max", f_max},
    {"attr", f_attr},
    {"format", f_format},
    {"center", f_center},
    {"wordcount", f_wordcount},
    {"batch", f_batch},
};

bool known_filter(const char *name) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
        if (!strcmp(FILTERS[i].name, name)) return true;
    return false;
}

value apply_filter(ctx *c, int line, const char *name, value in, args *a) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
        if (!strcmp(FILTERS[i].name, name)) return FILTERS[i].fn(c, line, in, a);
    FAIL(c, line, "unsupported filter '%s'", name);
}

/* ---- tests ---- */

/* `in is NAME(x)`: x is the test's argument (undefined when it takes none). */
typedef bool (*test_fn)(ctx *c, int line, const char *name, value in, value x, args *a);

static bool t_defined(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t != V_UNDEF; }
static bool t_undefined(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_UNDEF; }
static bool t_none(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_NONE; }
static bool t_boolean(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_BOOL; }
static bool t_true(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_BOOL && in.u.b; }
static bool t_false(ctx *c, int line, const char *name, value in, value x, args *a) {
    return in.t == V_BOOL && !in.u.b;
}
static bool t_integer(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_INT; }
static bool t_float(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_FLOAT; }
static bool t_number(ctx *c, int line, const char *name, value in, value x, args *a) { return v_num(in); }
static bool t_string(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_STR; }
static bool t_mapping(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_DICT; }
/* iterable, sequence */
static bool t_iterable(ctx *c, int line, const char *name, value in, value x, args *a) {
    return in.t == V_STR || in.t == V_LIST || in.t == V_DICT || in.t == V_UNDEF;
}
static bool t_callable(ctx *c, int line, const char *name, value in, value x, args *a) { return in.t == V_FUNC; }
static bool t_sameas(ctx *c, int line, const char *name, value in, value x, args *a) {
    if (in.t != x.t) return false;
    switch (in.t) {
    case V_NONE:
    case V_UNDEF: return true;
    case V_BOOL: return in.u.b == x.u.b;
    case V_INT: return in.u.i == x.u.i;
    case V_LIST: return in.u.l == x.u.l;
    case V_DICT:
    case V_NS: return in.u.d == x.u.d;
    case V_STR: return in.u.s.p == x.u.s.p && in.u.s.n == x.u.s.n;
    default: return false;
    }
}
static bool t_eq(ctx *c, int line, const char *name, value in, value x, args *a) { return v_eq(in, x); }
static bool t_ne(ctx *c, int line, const char *name, value in, value x, args *a) { return !v_eq(in, x); }
static bool t_lt(ctx *c, int line, const char *name, value in, value x, args *a) {
    return v_cmp(c, line, in, x, false) < 0;
}
static bool t_le(ctx *c, int line, const char *name, value in, value x, args *a) {
    return v_cmp(c, line, in, x, false) <= 0;
}
static bool t_gt(ctx *c, int line, const char *name, value in, value x, args *a) {
    return v_cmp(c, line, in, x, false) > 0;
}
static bool t_ge(ctx *c, int line, const char *name, value in, value x, args *a) {
    return v_cmp(c, line, in, x, false) >= 0;
}
static bool t_in(ctx *c, int line, const char *name, value in, value x, args *a) { return v_contains(c, line, x, in); }
/* even, odd, divisibleby */
static bool t_divisible(ctx *c, int line, const char *name, value in, value x, args *a) {
    if (in.t != V_INT && in.t != V_BOOL)
        FAIL(c, line, "TypeError: test '%s' needs an integer, not %s", name, v_typename(in));
    int64_t d = !strcmp(name, "divisibleby") ? arg_int(c, line, a, 0, "num", 1, name) : 2;
    if (d == 0) FAIL(c, line, "ZeroDivisionError: integer division or modulo by zero");
    bool div = d == -1 || v_asi(in) % d == 0;
    return !strcmp(name, "odd") ? !div : div;
}
static bool t_lower(ctx *c, int line, const char *name, value in, value x, args *a) {
    return in.t == V_STR && str_all(c, in, 'l');
}
static bool t_upper(ctx *c, int line, const char *name, value in, value x, args *a) {
    return in.t == V_STR && str_all(c, in, 'u');
}
static bool t_escaped(ctx *c, int line, const char *name, value in, value x, args *a) { return false; }

/* The tests: adding one is a row. arity: how many arguments it takes (0 or 1). */
static const struct {
    const char *name;
    test_fn fn;
    int arity;
} TESTS[] = {
    {"defined", t_defined, 0},
    {"undefined", t_undefined, 0},
    {"none", t_none, 0},
    {"boolean", t_boolean, 0},
    {"true", t_true, 0},
    {"false", t_false, 0},
    {"integer", t_integer, 0},
    {"float", t_float, 0},
    {"number", t_number, 0},
    {"string", t_string, 0},
    {"mapping", t_mapping, 0},
    {"iterable", t_iterable, 0},
    {"sequence", t_iterable, 0},
    {"callable", t_callable, 0},
    {"sameas", t_sameas, 1},
    {"eq", t_eq, 1},
    {"equalto", t_eq, 1},
    {"==", t_eq, 1},
    {"ne", t_ne, 1},
    {"!=", t_ne, 1},
    {"lt", t_lt, 1},
    {"lessthan", t_lt, 1},
    {"<", t_lt, 1},
    {"le", t_le, 1},
    {"<=", t_le, 1},
    {"gt", t_gt, 1},
    {"greaterthan", t_gt, 1},
    {">", t_gt, 1},
    {"ge", t_ge, 1},
    {">=", t_ge, 1},
    {"in", t_in, 1},
    {"even", t_divisible, 0},
    {"odd", t_divisible, 0},
    {"divisibleby", t_divisible, 1},
    {"lower", t_lower, 0},
    {"upper", t_upper, 0},
    {"escaped", t_escaped, 0},
};

static int test_index(const char *name) {
    for (size_t i = 0; i < sizeof TESTS / sizeof *TESTS; i++)
        if (!strcmp(TESTS[i].name, name)) return (int)i;
    return -1;
}

bool known_test(const char *name) { return test_index(name) >= 0; }

bool apply_test(ctx *c, int line, const char *name, value in, args *a) {
    value x = arg_get(a, 0, NULL);
    int i = test_index(name);
    bool takes_arg = i >= 0 && TESTS[i].arity == 1;
    if (a->npos + a->nkw > (takes_arg ? 1 : 0))
        FAIL(c, line, "TypeError: test '%s' takes %s", name, takes_arg ? "one argument" : "no arguments");
    if (i < 0) FAIL(c, line, "unsupported test '%s'", name);
    return TESTS[i].fn(c, line, name, in, x, a);
}

/* ---- global functions ---- */

static value g_range(ctx *c, int line, func *fn, args *a) {
    int64_t start = 0, stop, step = 1;
    if (a->npos == 1) stop = arg_int(c, line, a, 0, NULL, 0, "range");
    else {
        start = arg_int(c, line, a, 0, NULL, 0, "range");
        stop = arg_int(c, line, a, 1, NULL, 0, "range");
        step = arg_int(c, line, a, 2, NULL, 1, "range");
    }
    if (a->npos < 1 || a->npos > 3) FAIL(c, line, "TypeError: range expects 1 to 3 arguments");
    if (step == 0) FAIL(c, line, "ValueError: range() arg 3 must not be zero");
    /* the length in 128-bit arithmetic: stop - start and the indices never overflow */
    __int128 span = step > 0 ? (__int128)stop - start : (__int128)start - stop;
    __int128 n = span > 0 ? (span - 1) / (step > 0 ? (__int128)step : -(__int128)step) + 1 : 0;
    if (n > 10000000)
        FAIL(c, line, "range too large (%lld items; at most 10000000)", (long long)(n > INT64_MAX ? INT64_MAX : n));
    list *l = list_new(&c->f, (size_t)(n ? n : 1));
    for (int64_t k = 0; k < (int64_t)n; k++) list_push(&c->f, l, v_int((int64_t)(start + (__int128)k * step)));
    return v_list(l);
}

static value g_namespace(ctx *c, int line, func *fn, args *a) {
    dict *d = dict_new(&c->f, (size_t)a->nkw + 4);
    for (int i = 0; i < a->npos; i++) {
        if (a->pos[i].t != V_DICT) FAIL(c, line, "TypeError: namespace() takes mappings and keyword arguments");
        for (size_t k = 0; k < a->pos[i].u.d->n; k++) dict_set(&c->f, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]);
    }
    for (int i = 0; i < a->nkw; i++) dict_set(&c->f, d, v_cstr(a->kwn[i]), a->kwv[i]);
    value v = {V_NS, {0}};
    v.u.d = d;
    return v;
}

static value g_dict(ctx *c, int line, func *fn, args *a) {
    value v = g_namespace(c, line, fn, a);
    v.t = V_DICT;
    return v;
}

static value g_raise_exception(ctx *c, int line, func *fn, args *a) {
    value m = to_str(c, arg_get(a, 0, "message"));
    FAIL(c, line, "TemplateError: %.*s", (int)m.u.s.n, m.u.s.p);
}

static value g_strftime_now(ctx *c, int line, func *fn, args *a) {
    value f = arg_str(c, line, a, 0, NULL, "strftime_now");
    struct tm tm;
    time_t now = c->now ? c->now : time(NULL);
    os_localtime(now, &tm);
    char *fmt = xstrndup(&c->f, f.u.s.p, f.u.s.n);
    char out[512];
    size_t n = strftime(out, sizeof out, fmt, &tm);
    if (!n && *fmt) FAIL(c, line, "strftime_now: format too long or empty result");
    return v_str(xstrndup(&c->f, out, n), n);
}

value loop_cycle(ctx *c, int line, func *fn, args *a) {
    if (!a->npos) FAIL(c, line, "TypeError: no items for cycling given");
    long i = dict_find_str(fn->self.u.d, "index0", 6);
    return a->pos[fn->self.u.d->v[i].u.i % a->npos];
}

/* The global functions: adding one is a row. */
static const struct {
    const char *name;
    builtin_fn fn;
} GLOBALS[] = {
    {"range", g_range},
    {"namespace", g_namespace},
    {"dict", g_dict},
    {"raise_exception", g_raise_exception},
    {"strftime_now", g_strftime_now},
};

bool builtin_global(ctx *c, const char *name, value *out) {
    for (size_t i = 0; i < sizeof GLOBALS / sizeof *GLOBALS; i++)
        if (!strcmp(GLOBALS[i].name, name)) {
            *out = v_func(c, GLOBALS[i].name, GLOBALS[i].fn, v_none());
            return true;
        }
    return false;
}
