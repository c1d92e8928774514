//! How a sequence picks its next token: greedy (first maximum, as `torch.argmax`) or sampled
//! with temperature, top-k and top-p, from a per-sequence seeded generator, with the chosen
//! token's log-probability. Shared by the batch helper ([`crate::generate`]) and the continuous
//! batcher ([`crate::generator`]).

use rand::Rng;

/// How one row picks its tokens.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl Sampling {
    pub fn greedy() -> Self {
        Sampling { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

/// The distribution tokens are drawn from: suppressed tokens removed, divided by the temperature
/// (when above 0). Returns the scaled logits, their maximum and their log-sum-exp.
fn scaled(logits: &[f32], s: &Sampling, suppress: &[u32]) -> (Vec<f32>, f32, f32) {
    let mut l: Vec<f32> = logits.to_vec();
    for &t in suppress {
        if (t as usize) < l.len() {
            l[t as usize] = f32::NEG_INFINITY;
        }
    }
    let t = if s.temperature > 0.0 { s.temperature as f32 } else { 1.0 };
    for v in &mut l {
        *v /= t;
    }
    let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + l.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    (l, max, lse)
}

/// The `k` most likely tokens and their log-probabilities under the distribution [`choose`]
/// reports its log-probability from: suppressed tokens removed, temperature applied (when above
/// 0), before top-k / top-p truncation. Most likely first; ties by lower token id.
pub fn top_logprobs(logits: &[f32], s: &Sampling, suppress: &[u32], k: usize) -> Vec<(u32, f32)> {
    let (l, _, lse) = scaled(logits, s, suppress);
    let mut order: Vec<usize> = (0..l.len()).filter(|&i| l[i].is_finite()).collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    order.select_nth_unstable_by(k - 1, |&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
    order.into_iter().map(|i| (i as u32, l[i] - lse)).collect()
}

/// Chooses a token from one row's logits; returns it and its log-probability.
pub fn choose(logits: &[f32], s: &Sampling, suppress: &[u32], rng: &mut rand::rngs::StdRng) -> (u32, f32) {
    let (l, max, lse) = scaled(logits, s, suppress);
    if s.temperature <= 0.0 {
        // First maximum, as torch.argmax.
        let mut best = 0;
        for (i, &v) in l.iter().enumerate() {
            if v > l[best] {
                best = i;
            }
        }
        return (best as u32, l[best] - lse);
    }
    let mut order: Vec<usize> = (0..l.len()).filter(|&i| l[i].is_finite()).collect();
    order.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
    if let Some(k) = s.top_k {
        if k > 0 {
            order.truncate(k.max(1));
        }
    }
    let probs: Vec<f32> = order.iter().map(|&i| (l[i] - max).exp()).collect();
    let z: f32 = probs.iter().sum();
    let mut keep = probs.len();
    if let Some(p) = s.top_p {
        if p < 1.0 {
            // The smallest set of most likely tokens whose probability reaches top_p.
            let mut acc = 0.0;
            for (i, q) in probs.iter().enumerate() {
                acc += q / z;
                if acc >= p as f32 {
                    keep = i + 1;
                    break;
                }
            }
        }
    }
    let z2: f32 = probs[..keep].iter().sum();
    let mut u: f32 = rng.random::<f32>() * z2;
    let mut pick = order[keep - 1];
    for (i, q) in probs[..keep].iter().enumerate() {
        if u < *q {
            pick = order[i];
            break;
        }
        u -= q;
    }
    (pick as u32, l[pick] - lse)
}
