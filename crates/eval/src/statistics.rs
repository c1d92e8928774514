//! The statistics a reviewer asks for, written from their definitions:
//!
//! - [`wilson`]: the Wilson score 95% interval of a proportion (Wilson 1927; it stays inside
//!   [0, 1] and keeps its coverage at 0/n and n/n, where the normal approximation collapses);
//! - [`mcnemar_exact`]: McNemar's exact test on paired right/wrong answers (the two-sided
//!   binomial test of the discordant pairs against p = 1/2);
//! - [`paired_bootstrap`]: a percentile bootstrap interval of the difference in accuracy of two
//!   systems answering the same records (records resampled with replacement, pairs kept);
//! - [`calibration`]: expected calibration error over equal-width confidence bins (Guo et al.
//!   2017) and the bins of a reliability diagram; [`coverage`]: accuracy when answering only at
//!   or above a confidence threshold.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The 97.5% quantile of the standard normal distribution.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson's 95% interval for `correct` successes in `n` trials, as fractions; (0, 1) for n = 0.
pub fn wilson(correct: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (correct as f64, n as f64);
    let z2 = Z95 * Z95;
    let p = k / n;
    let centre = (k + z2 / 2.0) / (n + z2);
    let half = Z95 / (n + z2) * (p * (1.0 - p) * n + z2 / 4.0).sqrt();
    // At 0/n and n/n the bound is exactly 0 (or 1); rounding would leave 1e-16.
    let lo = if correct == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if correct as f64 == n { 1.0 } else { (centre + half).min(1.0) };
    (lo, hi)
}

/// McNemar's exact two-sided p-value from the discordant counts: `b` records only the first system
/// got right, `c` only the second. 1 when there are none.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // P(X <= min(b, c)) for X ~ Binomial(n, 1/2), doubled; terms in log space so large n is fine.
    let k = b.min(c);
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0; // ln C(n, 0)
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// A difference of two paired accuracies, in percentage points, with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Records both systems answered.
    pub n: usize,
    /// Accuracies (percent) of the first and second system on those records.
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// a - b, percentage points, and its 95% percentile-bootstrap interval.
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Discordant pairs: right only under a, right only under b.
    pub only_a_right: usize,
    pub only_b_right: usize,
    /// McNemar's exact two-sided p-value.
    pub p_value: f64,
}

impl PairedDifference {
    /// Whether the interval excludes zero.
    pub fn significant(&self) -> bool {
        self.ci_low > 0.0 || self.ci_high < 0.0
    }
}

/// Paired comparison of per-record correctness (`pairs[i]` = (a right, b right)): the difference,
/// a percentile bootstrap interval over `resamples` resamples drawn from `seed`, and McNemar's p.
pub fn paired_bootstrap(pairs: &[(bool, bool)], resamples: usize, seed: u64) -> PairedDifference {
    let n = pairs.len();
    let pct = |k: usize| if n == 0 { 0.0 } else { 100.0 * k as f64 / n as f64 };
    let (ra, rb) = (pairs.iter().filter(|p| p.0).count(), pairs.iter().filter(|p| p.1).count());
    // Each pair's contribution to a - b: +1, 0 or -1.
    let d: Vec<i32> = pairs.iter().map(|&(a, b)| a as i32 - b as i32).collect();
    let mut diffs = Vec::with_capacity(resamples);
    if n > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..resamples {
            let s: i64 = (0..n).map(|_| d[rng.random_range(0..n)] as i64).sum();
            diffs.push(100.0 * s as f64 / n as f64);
        }
        diffs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let quantile = |q: f64| {
        if diffs.is_empty() {
            0.0
        } else {
            diffs[((q * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)]
        }
    };
    let only_a = pairs.iter().filter(|p| p.0 && !p.1).count();
    let only_b = pairs.iter().filter(|p| !p.0 && p.1).count();
    PairedDifference {
        n,
        accuracy_a: pct(ra),
        accuracy_b: pct(rb),
        difference: pct(ra) - pct(rb),
        ci_low: quantile(0.025),
        ci_high: quantile(0.975),
        only_a_right: only_a,
        only_b_right: only_b,
        p_value: mcnemar_exact(only_a, only_b),
    }
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Confidence range [low, high).
    pub low: f64,
    pub high: f64,
    pub n: usize,
    /// Mean confidence and accuracy (fractions) of the records in the bin.
    pub confidence: f64,
    pub accuracy: f64,
}

/// Calibration of one set of answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Calibration {
    /// Records with a confidence.
    pub n: usize,
    /// Expected calibration error: sum over bins of (n_bin / n) |accuracy - confidence|, percent.
    pub ece: f64,
    pub bins: Vec<Bin>,
}

/// ECE and reliability bins over `bins` equal-width confidence bins (confidence 1 falls in the
/// last). `answers[i]` = (confidence in [0, 1], correct).
pub fn calibration(answers: &[(f64, bool)], bins: usize) -> Calibration {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(c, ok) in answers {
        let b = ((c.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += c;
        sums[b].2 += ok as usize;
    }
    let n = answers.len();
    let mut ece = 0.0;
    let mut out = Vec::new();
    for (i, &(k, conf, right)) in sums.iter().enumerate() {
        if k == 0 {
            continue;
        }
        let (c, a) = (conf / k as f64, right as f64 / k as f64);
        ece += k as f64 / n as f64 * (a - c).abs();
        out.push(Bin {
            low: i as f64 / bins as f64,
            high: (i + 1) as f64 / bins as f64,
            n: k,
            confidence: c,
            accuracy: a,
        });
    }
    Calibration { n, ece: 100.0 * ece, bins: out }
}

/// Accuracy when answering only at confidence >= threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoveragePoint {
    pub threshold: f64,
    /// Percent of the records answered, and the accuracy (percent) on them (0 when none).
    pub coverage: f64,
    pub accuracy: f64,
    pub answered: usize,
}

/// Accuracy at coverage for each threshold (a triage deployment answers only above one).
pub fn coverage(answers: &[(f64, bool)], thresholds: &[f64]) -> Vec<CoveragePoint> {
    let n = answers.len().max(1) as f64;
    thresholds
        .iter()
        .map(|&t| {
            let kept: Vec<bool> = answers.iter().filter(|a| a.0 >= t).map(|a| a.1).collect();
            let right = kept.iter().filter(|&&ok| ok).count();
            CoveragePoint {
                threshold: t,
                coverage: 100.0 * kept.len() as f64 / n,
                accuracy: if kept.is_empty() { 0.0 } else { 100.0 * right as f64 / kept.len() as f64 },
                answered: kept.len(),
            }
        })
        .collect()
}

/// The thresholds reported by default: 0 (answer everything), then 0.3 to 0.9 in steps of 0.1.
pub const THRESHOLDS: [f64; 8] = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-5
    }

    /// Hand-worked with z = 1.959964: centre = (k + z^2/2) / (n + z^2), half-width =
    /// z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4).
    #[test]
    fn wilson_bounds_by_hand() {
        // 0/10: centre = 1.920729 / 13.841459 = 0.138767 = half-width -> [0, 0.277533].
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && close(hi, 0.277533), "{lo} {hi}");
        // 10/10 mirrors it.
        let (lo, hi) = wilson(10, 10);
        assert!(close(lo, 0.722467) && hi == 1.0, "{lo} {hi}");
        // 5/10: centre 0.5, half-width 0.141601 * sqrt(2.5 + 0.960365) = 0.263408.
        let (lo, hi) = wilson(5, 10);
        assert!(close(lo, 0.236592) && close(hi, 0.763408), "{lo} {hi}");
        // 81/263: centre 0.310751, half-width 0.055461 -> [0.2553, 0.3662].
        let (lo, hi) = wilson(81, 263);
        assert!((lo - 0.2553).abs() < 1e-4 && (hi - 0.3662).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_exact_by_hand() {
        // b = 1, c = 6: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125.
        assert!(close(mcnemar_exact(1, 6), 0.125));
        assert!(close(mcnemar_exact(6, 1), 0.125));
        // b = 0, c = 5: 2 / 32.
        assert!(close(mcnemar_exact(0, 5), 0.0625));
        // Balanced discordance is no evidence: p = 1 (capped).
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large n stays finite: b = 200, c = 260 is significant at 1%.
        let p = mcnemar_exact(200, 260);
        assert!(p > 0.0 && p < 0.01, "{p}");
    }

    #[test]
    fn paired_bootstrap_is_reproducible_and_sensible() {
        // 100 records: a right on 70, b on 50; 25 only a, 5 only b.
        let mut pairs = vec![(true, true); 45];
        pairs.extend(vec![(true, false); 25]);
        pairs.extend(vec![(false, true); 5]);
        pairs.extend(vec![(false, false); 25]);
        let d = paired_bootstrap(&pairs, 2000, 7);
        assert_eq!(d, paired_bootstrap(&pairs, 2000, 7), "same seed, same interval");
        // With few resamples the percentiles move from seed to seed (with 2000 they settle on the
        // same 1-point steps of a 100-record difference).
        let few = |s| paired_bootstrap(&pairs, 40, s);
        assert!(
            (8..14).any(|s| (few(s).ci_low, few(s).ci_high) != (few(7).ci_low, few(7).ci_high)),
            "the seed matters"
        );
        assert_eq!((d.n, d.only_a_right, d.only_b_right), (100, 25, 5));
        assert!(close(d.difference, 20.0) && close(d.accuracy_a, 70.0));
        // The paired standard error is sqrt((30/100 - 0.2^2) / 100) = 5.1 points: about +-10.
        assert!(d.ci_low > 8.0 && d.ci_low < 12.0 && d.ci_high > 28.0 && d.ci_high < 32.0, "{d:?}");
        assert!(d.significant() && d.p_value < 0.001);
        let same = paired_bootstrap(&[(true, false), (false, true)].repeat(10), 500, 1);
        assert!(!same.significant() && same.p_value == 1.0);
    }

    #[test]
    fn calibrated_predictors_have_small_ece_and_overconfident_ones_do_not() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Calibrated: confidence c, right with probability c.
        let calibrated: Vec<(f64, bool)> = (0..20000)
            .map(|_| {
                let c: f64 = rng.random_range(0.25..1.0);
                (c, rng.random::<f64>() < c)
            })
            .collect();
        let good = calibration(&calibrated, 10);
        assert!(good.ece < 1.5, "calibrated ECE {}", good.ece);
        // Overconfident: says 0.95 but is right 60% of the time.
        let over: Vec<(f64, bool)> = (0..20000).map(|_| (0.95, rng.random::<f64>() < 0.6)).collect();
        let bad = calibration(&over, 10);
        assert!((bad.ece - 35.0).abs() < 1.5, "overconfident ECE {}", bad.ece);
        assert_eq!(bad.bins.len(), 1);
        assert_eq!(calibration(&[(1.0, true)], 10).bins[0].high, 1.0);
    }

    #[test]
    fn coverage_keeps_the_confident_answers() {
        let answers = [(0.9, true), (0.8, true), (0.6, false), (0.4, true), (0.2, false)];
        let pts = coverage(&answers, &[0.0, 0.5, 0.85, 0.95]);
        assert_eq!(pts.iter().map(|p| p.answered).collect::<Vec<_>>(), [5, 3, 1, 0]);
        assert!(close(pts[0].accuracy, 60.0) && close(pts[1].accuracy, 200.0 / 3.0) && close(pts[2].accuracy, 100.0));
        assert!(close(pts[1].coverage, 60.0) && pts[3].accuracy == 0.0);
    }
}
