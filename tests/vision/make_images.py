#!/usr/bin/python3
"""make_images.py — writes tests/data/vision/images/: small image files of a known pattern in the
formats lfm2c decodes, each with the RGB pixels Pillow gives for it (Image.open(f).convert("RGB"),
what Hugging Face's processor starts from), and resize.json: FNV-1a 64 digests of Pillow's
BILINEAR resizes of the pattern, and of the tiles and thumbnail Lfm2VlImageProcessor's rule cuts
from larger images. Needs Debian's python3-pil; run from the repository root:
    /usr/bin/python3 tests/vision/make_images.py
test_image.c reads what it writes."""
import io, json, os
from PIL import Image

OUT = "tests/data/vision/images"


def pattern(w, h):
    px = bytes((31 * x + 17 * y + 89 * c + (x * y) % 13) % 256 for y in range(h) for x in range(w) for c in range(3))
    return Image.frombytes("RGB", (w, h), px)


def fnv(b):
    h = 0xcbf29ce484222325
    for v in b:
        h = ((h ^ v) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def processor_cut(w, h, f=32, tile=512):
    """Lfm2VlImageProcessor's grid and thumbnail size (defaults) for a tiled image, by its code."""
    ratios = sorted({(c, r) for n in range(2, 11) for c in range(1, n + 1) for r in range(1, n + 1) if 2 <= c * r <= 10},
                    key=lambda x: x[0] * x[1])
    best, grid = float("inf"), (1, 1)
    for c, r in ratios:
        d = abs(w / h - c / r)
        if d < best:
            best, grid = d, (c, r)
        elif d == best and w * h > 0.5 * tile * tile * c * r:
            grid = (c, r)
    beta = (h * w / (256 * f * f)) ** 0.5
    return grid, (max(f, int(w / beta // f) * f), max(f, int(h / beta // f) * f))


def save(name, im, **kw):
    path = os.path.join(OUT, name)
    im.save(path, **kw)
    rgb = Image.open(path).convert("RGB")
    with open(path + ".rgb", "wb") as f:
        f.write(rgb.tobytes())
    return {"file": name, "w": rgb.width, "h": rgb.height}


def main():
    os.makedirs(OUT, exist_ok=True)
    src = pattern(45, 29)
    alpha = Image.frombytes("L", (45, 29), bytes((x * 5 + y * 3) % 256 for y in range(29) for x in range(45)))
    rgba = src.copy()
    rgba.putalpha(alpha)
    pal = src.quantize(64)
    files = [
        save("rgb.png", src),
        save("rgba.png", rgba),
        save("gray.png", src.convert("L")),
        save("palette-trns.png", pal, transparency=3),
        save("baseline.jpg", src, quality=90),
        save("progressive.jpg", src, quality=80, progressive=True),
        save("gray.jpg", src.convert("L"), quality=85),
        save("lossless.webp", src, lossless=True),
        save("lossy.webp", src, quality=70),
        save("rgba.webp", rgba, lossless=True),
        save("palette.gif", pal),
    ]
    resizes = []
    for (sw, sh), (dw, dh) in [((45, 29), (64, 32)), ((45, 29), (16, 40)), ((45, 29), (45, 12)), ((45, 29), (200, 130)),
                               ((300, 200), (32, 32)), ((301, 97), (96, 64)), ((17, 5), (17, 5))]:
        out = pattern(sw, sh).resize((dw, dh), resample=Image.BILINEAR)
        resizes.append({"src": [sw, sh], "dst": [dw, dh], "fnv": fnv(out.tobytes())})
    # the processor's cut (patch 16, merge 2, 64..256 tokens, tiles of 512) of these, by its code
    cuts = []
    for sw, sh in [(1100, 700), (1200, 1200)]:
        grid, thumb = processor_cut(sw, sh)
        im = pattern(sw, sh)
        big = im.resize((512 * grid[0], 512 * grid[1]), resample=Image.BILINEAR)
        d = []
        for r in range(grid[1]):
            for c in range(grid[0]):
                d.append(fnv(big.crop((c * 512, r * 512, (c + 1) * 512, (r + 1) * 512)).tobytes()))
        d.append(fnv(im.resize(thumb, resample=Image.BILINEAR).tobytes()))
        cuts.append({"src": [sw, sh], "grid": list(grid), "thumb": list(thumb), "fnv": d})
    with open(os.path.join(OUT, "images.json"), "w") as f:
        json.dump({"made_by": "tests/vision/make_images.py, Pillow " + Image.__version__, "files": files,
                   "resize": resizes, "cuts": cuts}, f, indent=1)


main()
