#include "emu.h"
#include "kmeans_emu.h"
#include <cstdio>
#include <random>
#include <cassert>
static std::mt19937_64 rng(42);
static float urand(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
static int irand(int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); }
static size_t ru(size_t x, size_t m) { return (x + m - 1) / m * m; }
static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

void test_assign(u32 r, u32 L, u32 D) {
    std::vector<signed char> c(L * D), x(r * D); std::vector<float> sc(L);
    for (u32 l = 0; l < L; l++) {
        int kind = irand(0, 7);
        if (l > 0 && kind == 0) { u32 s = irand(0, l - 1); for (u32 t = 0; t < D; t++) c[l*D+t] = c[s*D+t]; sc[l] = sc[s]; continue; }
        if (l > 0 && kind == 1) { for (u32 t = 0; t < D; t++) c[l*D+t] = 0; sc[l] = 0; continue; }
        for (u32 t = 0; t < D; t++) c[l*D+t] = irand(-127, 127);
        sc[l] = urand(0.001f, 0.01f);
    }
    for (u32 i = 0; i < r; i++) {
        int kind = irand(0, 9);
        if (kind == 0) { u32 l = irand(0, L - 1); for (u32 t = 0; t < D; t++) x[i*D+t] = c[l*D+t]; continue; }
        for (u32 t = 0; t < D; t++) x[i*D+t] = kind == 1 ? 0 : irand(-127, 127);
    }
    u32 dp = ru(D, 32), lp = ru(L, 128), nw = dp / 4;
    std::vector<uint4> xa(r * dp / 16 + 1), ca(lp * dp / 16);
    std::memset(xa.data(), 0, xa.size() * 16); std::memset(ca.data(), 0, ca.size() * 16);
    for (u32 i = 0; i < r; i++) std::memcpy((char*)xa.data() + i * dp, &x[i*D], D);
    for (u32 l = 0; l < L; l++) std::memcpy((char*)ca.data() + l * dp, &c[l*D], D);
    std::vector<u32> out(r, 0xdeadbeef);
    launch(ru(r, 128) / 128, 256, [&] { assign_i8(xa.data(), r, ca.data(), sc.data(), L, nw, out.data()); });
    int ties = 0;
    for (u32 i = 0; i < r; i++) {
        u32 bl = 0; float bs = -INFINITY; int nb = 0;
        for (u32 l = 0; l < L; l++) {
            int dot = 0; for (u32 t = 0; t < D; t++) dot += x[i*D+t] * c[l*D+t];
            float v = (float)dot * sc[l];
            if (v > bs) { bs = v; bl = l; nb = 1; } else if (v == bs) nb++;
        }
        ties += nb > 1;
        CHECK(out[i] == bl, "assign r %u L %u D %u row %u got %u want %u", r, L, D, i, out[i], bl);
        if (out[i] != bl) return;
    }
    printf("assign r %u L %u D %u ok (%d rows with ties)\n", r, L, D, ties);
}

void test_km_assign(u32 m, u32 k, u32 d) {
    u32 dp = ru(d, 8), kp = ru(k, 128);
    std::vector<float> x(m * dp + 4, 0), c(kp * dp, 0);
    for (u32 i = 0; i < m; i++) for (u32 t = 0; t < d; t++) x[i*dp+t] = urand(-1, 1);
    for (u32 j = 0; j < k; j++) for (u32 t = 0; t < d; t++) c[j*dp+t] = (j > 0 && j % 5 == 0) ? c[(j-1)*dp+t] : urand(-1, 1);
    std::vector<u32> out(m, 0xdeadbeef);
    launch(ru(m, 128) / 128, 256, [&] { km_assign((const uint4*)x.data(), m, (const uint4*)c.data(), k, dp, out.data()); });
    for (u32 i = 0; i < m; i++) {
        u32 bl = 0; float bs = -INFINITY;
        for (u32 j = 0; j < k; j++) { float a = 0; for (u32 t = 0; t < dp; t++) a = std::fmaf(x[i*dp+t], c[j*dp+t], a); if (a > bs) { bs = a; bl = j; } }
        CHECK(out[i] == bl, "km_assign m %u k %u d %u row %u got %u want %u", m, k, d, i, out[i], bl);
        if (out[i] != bl) return;
    }
    printf("km_assign m %u k %u d %u ok\n", m, k, d);
}

void test_lloyd_tail(u32 m, u32 d, u32 k) {
    u32 dp = ru(d, 8);
    std::vector<float> x(m * dp, 0); std::vector<u32> a(m);
    for (u32 i = 0; i < m; i++) { a[i] = irand(0, k - 1) % (k > 2 ? k - 2 : k); for (u32 t = 0; t < d; t++) x[i*dp+t] = urand(-1, 1); }
    std::vector<u64> sums(k * dp, 0); std::vector<u32> cnt(k, 0);
    float fx = 1099511627776.0f;
    launch((m + 15) / 16, 128, [&] { km_accum(x.data(), a.data(), m, d, dp, fx, sums.data(), cnt.data()); });
    std::vector<float> fs(k * dp);
    launch(7, 256, [&] { km_to_f32(sums.data(), (u64)k * dp, 1.0 / fx, fs.data()); });
    std::vector<double> ref(k * dp, 0); std::vector<u32> rc(k, 0);
    for (u32 i = 0; i < m; i++) { rc[a[i]]++; for (u32 t = 0; t < d; t++) ref[a[i]*dp+t] += x[i*dp+t]; }
    double err = 0; for (u32 e = 0; e < k * dp; e++) err = std::max(err, std::fabs(ref[e] - fs[e]));
    CHECK(rc == cnt, "counts differ");
    CHECK(err < 1e-5, "sums err %g", err);
    // split: empty clusters k-2, k-1 from 0 and 1
    std::vector<u32> pairs = {k - 2, 0, k - 1, 0};
    std::vector<float> f2 = fs;
    for (u32 p = 0; p < 2; p++) for (u32 t = 0; t < d; t++) { float e = t % 2 == 0 ? 1.0f/1024 : -1.0f/1024; float s = f2[pairs[2*p+1]*dp+t]; f2[pairs[2*p]*dp+t] = s * (1+e); f2[pairs[2*p+1]*dp+t] = s * (1-e); }
    launch((d + 255) / 256, 256, [&] { km_split(fs.data(), d, dp, pairs.data(), 2); });
    CHECK(f2 == fs, "split differs");
    std::vector<u32> after = cnt; after[k-2] = 1; after[k-1] = 1; after[1] = 0;
    std::vector<float> c(k * dp, 7.0f);
    launch((k + 7) / 8, 256, [&] { km_normalize(fs.data(), after.data(), k, d, dp, c.data()); });
    for (u32 j = 0; j < k; j++) {
        double n = 0; for (u32 t = 0; t < d; t++) n += (double)c[j*dp+t] * c[j*dp+t];
        if (after[j] == 0) CHECK(c[j*dp] == 7.0f, "kept centroid %u changed", j);
        else CHECK(std::fabs(std::sqrt(n) - 1) < 1e-5, "centroid %u norm %g", j, std::sqrt(n));
    }
    std::vector<u32> idx = {3, 0, 2}; std::vector<float> g(3 * dp);
    launch(3, 128, [&] { gather_rows(x.data(), idx.data(), 3, dp, g.data()); });
    CHECK(std::memcmp(g.data(), &x[3*dp], dp*4) == 0 && std::memcmp(&g[2*dp], &x[2*dp], dp*4) == 0, "gather");
    printf("lloyd tail m %u d %u k %u ok (sum err %g)\n", m, d, k, err);
}

int main() {
    test_assign(1, 1, 1);
    test_assign(1, 37, 3);
    test_assign(129, 1, 65);
    test_assign(300, 200, 64);
    test_assign(200, 300, 130);
    test_assign(50, 4099, 8);
    test_assign(1000, 97, 2);
    test_km_assign(1, 1, 1);
    test_km_assign(130, 33, 3);
    test_km_assign(300, 260, 20);
    test_lloyd_tail(500, 37, 9);
    printf("fails: %d\n", fails);
    return fails != 0;
}
