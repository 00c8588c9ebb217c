/* test_replay.c — the decode replay of `lfm2c bench` (src/cpu/replay.c): on the MoE and dense
 * Q4_K_M fixtures with a pool of 2, armed for n passes it records exactly the next n one-token
 * passes (not a prompt's pass before them, not a pass after them; a prompt's pass in between
 * ends the recording), and its replay reads the same bytes in the same number of jobs as the
 * decode profile counted for those passes, whole (replay_run) or at one distance (replay_gbps);
 * nothing recorded, nothing to replay; zero passes cannot be armed. bench --warm-read's reading
 * of every weight (replay_read_weights) reads each tensor's bytes once, whatever was recorded. */
#include "cpu/replay.h"
#include "lfm2c.h"
#include "test.h"

#include <string.h>

static int decode(lfm2c_session *s, int n, int32_t first) {
    int32_t t[8];
    for (int i = 0; i < n; i++) t[i] = first + i;
    lfm2c_error err = {0};
    return lfm2c_session_decode(s, t, n, LFM2C_LOGITS_LAST, &err);
}

/* bytes and jobs the profile counted since p0 */
static void since(const lfm2c_model *m, const lfm2c_decode_profile *p0, double *bytes, long *jobs) {
    const lfm2c_decode_profile p = lfm2c_model_decode_profile(m);
    *bytes = p.matmul_bytes - p0->matmul_bytes;
    *jobs = p.matmul_calls - p0->matmul_calls;
}

static void check_model(const char *path) {
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 2;
    lfm2c_model *m = lfm2c_model_open(path, &mp, &err);
    CHECK(m != NULL, "open %s: %s", path, err.msg);
    if (!m) return;
    lfm2c_session *s = lfm2c_session_new(m, 64, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) goto out;
    replay_result r;
    CHECK(replay_run(m, &r) == -1 && replay_gbps(m, 4096, false) < 0, "%s: nothing recorded, nothing to replay", path);

    /* two passes armed: the prompt's pass is skipped, the two decode passes recorded, the third not */
    CHECK(replay_arm(m, 2) == 0, "%s: arm", path);
    CHECK(decode(s, 5, 10) == 0, "%s: prompt", path);
    lfm2c_decode_profile p0 = lfm2c_model_decode_profile(m);
    CHECK(decode(s, 1, 20) == 0 && decode(s, 1, 21) == 0, "%s: decode", path);
    double bytes;
    long jobs;
    since(m, &p0, &bytes, &jobs);
    CHECK(decode(s, 1, 22) == 0, "%s: decode after", path);
    CHECK(replay_run(m, &r) == 0, "%s: replay", path);
    CHECK(r.passes == 2, "%s: %d passes recorded, want 2", path, r.passes);
    CHECK(bytes > 0 && r.bytes == bytes, "%s: replayed %.0f bytes, the two passes' products read %.0f", path, r.bytes,
          bytes);
    CHECK(r.jobs == jobs, "%s: %d jobs replayed, the profile counted %ld", path, r.jobs, jobs);
    CHECK(r.ranges >= r.jobs, "%s: %d ranges in %d jobs", path, r.ranges, r.jobs);
    CHECK(r.gbps_jobs > 0 && r.gbps_flat > 0, "%s: rates %.3f %.3f", path, r.gbps_jobs, r.gbps_flat);
    CHECK(replay_run(m, &r) == 0 && r.passes == 2, "%s: a recording replays again", path);
    CHECK(replay_gbps(m, 1024, false) > 0 && replay_gbps(m, 0, true) > 0, "%s: one reading at one distance", path);

    /* three armed, a prompt's pass after the first ends the recording there */
    CHECK(replay_arm(m, 3) == 0, "%s: arm again", path);
    p0 = lfm2c_model_decode_profile(m);
    CHECK(decode(s, 1, 23) == 0, "%s: decode", path);
    since(m, &p0, &bytes, &jobs);
    CHECK(decode(s, 3, 30) == 0 && decode(s, 1, 40) == 0, "%s: prompt, decode", path);
    CHECK(replay_run(m, &r) == 0 && r.passes == 1 && r.bytes == bytes && r.jobs == jobs,
          "%s: %d passes, %.0f bytes (want 1, %.0f)", path, r.passes, r.bytes, bytes);
    CHECK(replay_arm(m, 0) == -1, "%s: zero passes refused", path);
    double all = 0, read = -1;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) all += (double)m->gguf->tensors[i].nbytes;
    CHECK(replay_read_weights(m, &read) > 0 && read == all && all > 0, "%s: every weight read once: %.0f bytes of %.0f",
          path, read, all);
    lfm2c_session_free(s);
out:
    lfm2c_model_free(m);
}

int main(void) {
    check_model(DATA("lfm2-kq-moe-q4_k_m.gguf"));
    check_model(DATA("lfm2-kq-dense-q4_k_m.gguf"));
    TEST_MAIN_END();
}
