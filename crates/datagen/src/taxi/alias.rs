//! Walker's alias method: O(1) draws from a fixed discrete distribution.
//!
//! `rand_distr::WeightedAliasIndex` does the same with two uniform draws, one of them with
//! rejection; this table takes a single 64-bit draw (the high half picks the column, the low
//! half decides between it and its alias). Zone sampling is the hottest loop of the
//! generator, so the difference shows.

/// A discrete distribution over `0..n`, `n < 2^32`.
#[derive(Debug, Clone)]
pub(crate) struct AliasTable {
    /// Keep column `i` when the low 32 bits of the draw are below `keep[i]`.
    keep: Vec<u32>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// The table for `weights`; `None` if they are empty, too many, negative, not finite or
    /// all zero.
    pub(crate) fn new(weights: &[f64]) -> Option<Self> {
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        if n == 0
            || u32::try_from(n).is_err()
            || !sum.is_finite()
            || sum <= 0.0
            || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
        {
            return None;
        }
        // Vose's construction: scale to mean 1, pair each short column with a tall one.
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers are 1 up to rounding: always keep them.
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        let keep = prob
            .iter()
            .map(|&p| {
                if p >= 1.0 {
                    u32::MAX
                } else {
                    (p * 4_294_967_296.0) as u32
                }
            })
            .collect();
        Some(Self { keep, alias })
    }

    /// The outcome for the uniform 64-bit draw `u`.
    #[inline]
    pub(crate) fn sample(&self, u: u64) -> usize {
        let n = self.keep.len() as u64;
        let i = (((u >> 32) * n) >> 32) as usize;
        if (u as u32) < self.keep[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_follow_the_weights() {
        let weights = [1.0, 0.0, 3.0, 6.0];
        let t = AliasTable::new(&weights).unwrap();
        let mut counts = [0u32; 4];
        // An even sweep of the 64-bit space stands in for random draws.
        let steps = 1_000_000u64;
        for k in 0..steps {
            let u =
                (k * (u64::MAX / steps)) ^ (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF);
            counts[t.sample(u)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, w) in counts.iter().zip(weights) {
            let share = f64::from(*c) / steps as f64;
            assert!((share - w / 10.0).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn rejects_unusable_weights() {
        assert!(AliasTable::new(&[]).is_none());
        assert!(AliasTable::new(&[0.0, 0.0]).is_none());
        assert!(AliasTable::new(&[1.0, -1.0, 2.0]).is_none());
        assert!(AliasTable::new(&[1.0, f64::NAN]).is_none());
        assert_eq!(AliasTable::new(&[2.0]).unwrap().sample(u64::MAX), 0);
    }
}
