//! A small, fixed pseudo-random generator for every host-side draw: the dataset code's (shuffles, synthetic
//! factors, loader order), the metrics' latents, and the trainer's per-iteration seeds of libtorch's generator.
//! It is hand-written on purpose: the sequences are part of the on-disk results (which image is where, which
//! batch the trainer sees after a resume), so they must not change when a dependency is upgraded.

/// SplitMix64 (Steele, Lea & Flood 2014): 64-bit state, passes BigCrush, and any seed is a good seed.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

/// Mixes a 64-bit value (the SplitMix64 output function); used to derive independent stream seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for the stream named by `parts` under `seed` (e.g. `[level, epoch]`), independent of neighbouring names.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut h = mix64(seed ^ 0x6a09_e667_f3bc_c908);
    for &p in parts {
        h = mix64(h ^ mix64(p.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    h
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The stream `parts` of `seed` (see [`derive_seed`]).
    pub fn stream(seed: u64, parts: &[u64]) -> Self {
        Rng::new(derive_seed(seed, parts))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (multiply-shift; the bias is below n / 2^64, far below anything measurable).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A seeded permutation of 0..n.
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    assert!(
        n <= u32::MAX as usize,
        "permutation of more than 2^32 items"
    );
    let mut p: Vec<u32> = (0..n as u32).collect();
    Rng::new(seed).shuffle(&mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let p = permutation(1000, 7);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_eq!(p, permutation(1000, 7));
        assert_ne!(p, permutation(1000, 8));
        assert_ne!(p, s, "a shuffle of 1000 items is not the identity");
    }

    #[test]
    fn uniform_and_below_cover_their_ranges() {
        let mut r = Rng::new(1);
        let mut counts = [0usize; 10];
        let mut mean = 0.0;
        for _ in 0..100_000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            mean += u;
            counts[r.below(10) as usize] += 1;
        }
        assert!((mean / 100_000.0 - 0.5).abs() < 0.01);
        for c in counts {
            assert!((9_500..10_500).contains(&c), "bucket count {c}");
        }
        assert_ne!(derive_seed(1, &[2, 3]), derive_seed(1, &[3, 2]));
    }
}
