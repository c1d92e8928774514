//! Generation: batching and the KV cache agree with full forwards, sampling is repeatable by seed,
//! EOS and max_new_tokens stop rows, and vision placeholders are never sampled.

use crate::common;

use candle_core::DType;
use serde_json::json;
use std::path::Path;
use vlm::generate::{choose, generate, GenerateOptions, Sampling};
use vlm::Checkpoint;

fn ck() -> Checkpoint {
    Checkpoint::open(&common::fixtures().join("model"), DType::F32).unwrap()
}

fn encode(ck: &Checkpoint, questions: &[&str]) -> vlm::prompt::Encoded {
    let prompts: Vec<_> = questions
        .iter()
        .map(|q| {
            let m = json!([{"role": "user", "content": [{"type": "image", "image": "wide.png"}, {"type": "text", "text": q}]}]);
            ck.processor.prompt(&m, &common::fixtures().join("images")).unwrap()
        })
        .collect();
    ck.processor.encode(&prompts, None, ck.model.device()).unwrap()
}

fn opts(n: usize, rows: usize, s: Sampling) -> GenerateOptions {
    GenerateOptions { max_new_tokens: n, eos_token_ids: vec![], suppress_token_ids: vec![], sampling: vec![s; rows] }
}

#[test]
fn cached_decoding_matches_full_forward_scores() {
    // The log-prob of every greedy token equals the full-sequence forward's log-softmax.
    let ck = ck();
    let enc = encode(&ck, &["Which organ is shown in this image?", "What is the grade?"]);
    let g = generate(&ck.model, &enc.batch, &opts(6, 2, Sampling::greedy()), &mut |_, _| true).unwrap();
    let completions: Vec<Vec<u32>> = g.iter().map(|x| x.tokens.clone()).collect();
    let mut b = enc.batch.clone();
    let l = b.len();
    for (r, c) in completions.iter().enumerate() {
        b.input_ids[r].extend(c);
        b.attention_mask[r].extend(std::iter::repeat_n(1, c.len()));
    }
    let cm: Vec<Vec<u32>> = (0..2).map(|_| (0..l + 6).map(|i| (i >= l) as u32).collect()).collect();
    let s = vlm::logprob::completion_logprobs(&ck.model, &b, &cm).unwrap();
    let full: Vec<Vec<f32>> = s.logprobs.to_vec2().unwrap();
    for r in 0..2 {
        assert!(full[r].len() >= 6 && g[r].logprobs.len() >= 6);
        for (t, (&scored, &sampled)) in full[r].iter().zip(&g[r].logprobs).take(6).enumerate() {
            assert!((scored - sampled).abs() < 1e-4, "row {r} token {t}: {scored} vs {sampled}");
        }
    }
}

#[test]
fn batched_generation_equals_one_at_a_time() {
    let ck = ck();
    let qs = ["Which organ is shown in this image?", "Grade?"];
    let both = generate(&ck.model, &encode(&ck, &qs).batch, &opts(8, 2, Sampling::greedy()), &mut |_, _| true).unwrap();
    for (i, q) in qs.iter().enumerate() {
        let one =
            generate(&ck.model, &encode(&ck, &[q]).batch, &opts(8, 1, Sampling::greedy()), &mut |_, _| true).unwrap();
        assert_eq!(one[0].tokens, both[i].tokens, "row {i}");
    }
}

#[test]
fn sampling_is_repeatable_and_seed_dependent() {
    let ck = ck();
    let enc = encode(&ck, &["What imaging modality is used?"]);
    let s = |seed| Sampling { temperature: 1.0, top_k: None, top_p: None, seed };
    let a = generate(&ck.model, &enc.batch, &opts(12, 1, s(7)), &mut |_, _| true).unwrap();
    let b = generate(&ck.model, &enc.batch, &opts(12, 1, s(7)), &mut |_, _| true).unwrap();
    let c = generate(&ck.model, &enc.batch, &opts(12, 1, s(8)), &mut |_, _| true).unwrap();
    assert_eq!(a, b);
    assert_ne!(a[0].tokens, c[0].tokens);
    // top_k = 1 is greedy whatever the temperature.
    let k1 = Sampling { temperature: 1.3, top_k: Some(1), top_p: None, seed: 3 };
    let g = generate(&ck.model, &enc.batch, &opts(12, 1, Sampling::greedy()), &mut |_, _| true).unwrap();
    let k = generate(&ck.model, &enc.batch, &opts(12, 1, k1), &mut |_, _| true).unwrap();
    assert_eq!(g[0].tokens, k[0].tokens);
}

#[test]
fn choose_follows_temperature_top_k_and_top_p() {
    use rand::SeedableRng;
    let logits = [2.0f32, 1.0, 0.5, -1.0, 3.0];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    // Greedy: argmax, log-prob from the plain log-softmax.
    let (t, lp) = choose(&logits, &Sampling::greedy(), &[], &mut rng);
    assert_eq!(t, 4);
    let lse = logits.iter().map(|v| v.exp()).sum::<f32>().ln();
    assert!((lp - (3.0 - lse)).abs() < 1e-6);
    // Suppressed tokens are never chosen.
    let (t, _) = choose(&logits, &Sampling::greedy(), &[4], &mut rng);
    assert_eq!(t, 0);
    // top_p = 0.5: probabilities are [.23,.08,.05,.01,.63] -> only token 4 is kept.
    let s = Sampling { temperature: 1.0, top_k: None, top_p: Some(0.5), seed: 0 };
    for _ in 0..50 {
        assert_eq!(choose(&logits, &s, &[], &mut rng).0, 4);
    }
    // top_k = 2: only tokens 4 and 0 ever appear, in roughly a 0.63:0.23 ratio.
    let s = Sampling { temperature: 1.0, top_k: Some(2), top_p: None, seed: 0 };
    let mut counts = [0usize; 5];
    for _ in 0..4000 {
        counts[choose(&logits, &s, &[], &mut rng).0 as usize] += 1;
    }
    assert_eq!(counts[1] + counts[2] + counts[3], 0);
    let ratio = counts[4] as f64 / counts[0] as f64;
    assert!((ratio - 1.0f64.exp()).abs() < 0.3, "{counts:?}");
    // The reported log-prob is under the temperature-scaled distribution.
    let s = Sampling { temperature: 2.0, top_k: None, top_p: None, seed: 0 };
    let (t, lp) = choose(&logits, &s, &[], &mut rng);
    let lse2 = logits.iter().map(|v| (v / 2.0).exp()).sum::<f32>().ln();
    assert!((lp - (logits[t as usize] / 2.0 - lse2)).abs() < 1e-5);
}

#[test]
fn eos_and_max_new_tokens_stop_rows() {
    let ck = ck();
    let enc = encode(&ck, &["Which organ?", "What is the most likely diagnosis here?"]);
    let free = generate(&ck.model, &enc.batch, &opts(10, 2, Sampling::greedy()), &mut |_, _| true).unwrap();
    assert!(free.iter().all(|g| g.tokens.len() == 10 && !g.stopped));
    // Declare row 0's third token an EOS id: row 0 stops there, row 1 goes on unchanged.
    let eos = free[0].tokens[2];
    let mut o = opts(10, 2, Sampling::greedy());
    o.eos_token_ids = vec![eos];
    let stopped = generate(&ck.model, &enc.batch, &o, &mut |_, _| true).unwrap();
    let first_eos = free[0].tokens.iter().position(|&t| t == eos).unwrap();
    assert_eq!(stopped[0].tokens, free[0].tokens[..=first_eos]);
    assert!(stopped[0].stopped);
    if !free[1].tokens.contains(&eos) {
        assert_eq!(stopped[1].tokens, free[1].tokens);
    }
}

#[test]
fn vision_placeholders_are_never_sampled_when_suppressed() {
    let ck = ck();
    let enc = encode(&ck, &["What imaging modality is used?"]);
    let mut o = opts(40, 1, Sampling { temperature: 5.0, top_k: None, top_p: None, seed: 1 });
    o.suppress_token_ids = ck.config.vision_token_ids();
    for seed in 0..5 {
        o.sampling[0].seed = seed;
        let g = generate(&ck.model, &enc.batch, &o, &mut |_, _| true).unwrap();
        assert!(g[0].tokens.iter().all(|t| !ck.config.vision_token_ids().contains(t)));
    }
    let _ = Path::new("");
}

#[test]
fn sequences_joining_and_leaving_a_running_batch_get_what_they_would_alone() {
    use vlm::generator::{Finish, Generator, SequenceSpec};
    let ck = ck();
    let qs = [
        "Which organ is shown in this image?",
        "Grade?",
        "What imaging modality is used to acquire this image? Answer briefly.",
    ];
    let sampled = |seed| Sampling { temperature: 0.9, top_k: None, top_p: Some(0.95), seed };
    let samplings = [Sampling::greedy(), sampled(5), sampled(9)];
    let budgets = [10usize, 6, 12];
    // Each alone, through the plain batch path.
    let alone: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            generate(
                &ck.model,
                &encode(&ck, &[qs[i]]).batch,
                &opts(budgets[i], 1, samplings[i].clone()),
                &mut |_, _| true,
            )
            .unwrap()[0]
                .tokens
                .clone()
        })
        .collect();
    // Together: 0 starts, 1 joins after 3 steps, 2 joins after 5 more; 1 is cancelled after 4 of
    // its tokens and 2 is never affected by it.
    let mut g = Generator::new(&ck.model, vec![], vec![]);
    let spec = |i: usize| SequenceSpec {
        id: i as u64,
        sampling: samplings[i].clone(),
        max_new_tokens: budgets[i],
        ignore_eos: false,
        top_logprobs: 0,
    };
    let mut got: Vec<Vec<u32>> = vec![vec![]; 3];
    let mut finish = vec![None; 3];
    g.admit(&encode(&ck, &[qs[0]]).batch, vec![spec(0)]).unwrap();
    let mut step = 0;
    while !g.is_empty() || step < 9 {
        if step == 3 {
            g.admit(&encode(&ck, &[qs[1]]).batch, vec![spec(1)]).unwrap();
        }
        if step == 8 {
            g.admit(&encode(&ck, &[qs[2]]).batch, vec![spec(2)]).unwrap();
        }
        for e in g.step().unwrap() {
            got[e.id as usize].push(e.token);
            if e.finish.is_some() {
                finish[e.id as usize] = e.finish;
            }
            if e.id == 1 && got[1].len() == 4 {
                g.cancel(1).unwrap();
            }
        }
        step += 1;
    }
    assert_eq!(got[0], alone[0]);
    assert_eq!(got[1], alone[1][..4].to_vec());
    assert_eq!(got[2], alone[2]);
    assert_eq!(finish, vec![Some(Finish::Length), None, Some(Finish::Length)]);
    // Everyone gone: the cache is released.
    assert_eq!(g.cache_len(), 0);
}

#[test]
fn watched_tokens_report_the_log_softmax_at_every_step() {
    let ck = ck();
    let enc = encode(&ck, &["What is this?", "And this one, with more words?"]);
    let vocab = ck.config.text.vocab_size as u32;
    let all: Vec<u32> = (0..vocab).collect();
    let o = opts(5, 2, Sampling::greedy());
    let plain = generate(&ck.model, &enc.batch, &o, &mut |_, _| true).unwrap();
    let watched = vlm::generate::generate_watching(&ck.model, &enc.batch, &o, &all, &mut |_, _| true).unwrap();
    for (p, w) in plain.iter().zip(&watched) {
        // Watching changes nothing generated.
        assert_eq!((&p.tokens, &p.logprobs), (&w.tokens, &w.logprobs));
        assert!(p.watched.is_empty());
        assert_eq!(w.watched.len(), w.tokens.len());
        for ((step, &t), &lp) in w.watched.iter().zip(&w.tokens).zip(&w.logprobs) {
            // A distribution (log-sum-exp 0) whose value at the greedy token is its log-prob.
            let lse = step.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            assert!(lse.abs() < 1e-4, "log-sum-exp {lse}");
            assert!((step[t as usize] - lp).abs() < 1e-5, "{} vs {lp}", step[t as usize]);
        }
    }
}

/// Attention a block of queries at a time (long inference prompts) computes what one [B, L, T]
/// score matrix does: a left-padded batch with an image, with blocks of 1 query and of several.
#[test]
fn blocked_attention_equals_whole_prompt_attention() {
    let mut ck = ck();
    let enc = encode(&ck, &["Which organ is shown in this image? Answer with the letter.", "Grade?"]);
    let (whole, _) = ck.model.forward(&enc.batch, None).unwrap();
    let (b, l, _) = whole.dims3().unwrap();
    let heads = ck.config.text.num_attention_heads;
    for queries in [1, 7] {
        // Score blocks of [b, heads, queries, l] float32.
        let budget = 4 * b * heads * queries * l;
        ck.model.text.attention_score_bytes = budget;
        let (blocked, _) = ck.model.forward(&enc.batch, None).unwrap();
        let e = common::rel_err(&common::f32s(&blocked), &common::f32s(&whole), |i| {
            enc.batch.attention_mask[i / (l * whole.dims()[2])][(i / whole.dims()[2]) % l] == 1
        });
        assert!(e < 1e-5, "blocks of {queries} queries: logits rel err {e}");
    }
}

/// A prompt prefilled a chunk at a time joins the batch with the tokens a whole prefill gives, and
/// a sequence already running keeps getting a token at every step meanwhile.
#[test]
fn chunked_prefill_gives_the_same_tokens_and_never_stalls_the_batch() {
    // Whole-chunk attention, and blocks of 2 queries (keys limited to what each block sees).
    for budget in [None, Some(4 * 4 * 2 * 50)] {
        chunked_prefill_matches(budget);
    }
}

fn chunked_prefill_matches(attention_score_bytes: Option<usize>) {
    use vlm::generator::{Generator, SequenceSpec};
    let mut ck = ck();
    if let Some(b) = attention_score_bytes {
        ck.model.text.attention_score_bytes = b;
    }
    let ck = ck;
    let long = encode(&ck, &["Which organ is shown in this image? Answer with the letter of the option."]);
    let short = encode(&ck, &["Grade?"]);
    let spec =
        |id| SequenceSpec { id, sampling: Sampling::greedy(), max_new_tokens: 6, ignore_eos: true, top_logprobs: 0 };
    let run = |g: &mut Generator, id: u64| -> Vec<u32> {
        let mut out = Vec::new();
        while !g.is_empty() {
            out.extend(g.step().unwrap().into_iter().filter(|e| e.id == id).map(|e| e.token));
        }
        out
    };
    let mut whole = Generator::new(&ck.model, vec![], vec![]);
    whole.admit(&long.batch, vec![spec(1)]).unwrap();
    let want = run(&mut whole, 1);
    assert_eq!(want.len(), 6);

    let mut g = Generator::new(&ck.model, vec![], vec![]);
    g.admit(&short.batch, vec![SequenceSpec { max_new_tokens: 100, ..spec(2) }]).unwrap();
    g.admit_chunked(&long.batch, vec![spec(1)], 5).unwrap();
    let chunks = long.batch.len().div_ceil(5);
    let mut got = Vec::new();
    for step in 0..chunks + 5 {
        let events = g.step().unwrap();
        // The running sequence gets its token at every step, during the prefill too.
        assert!(events.iter().any(|e| e.id == 2), "step {step}: the running sequence stalled");
        assert_eq!(g.prefilling(), step + 1 < chunks, "step {step}");
        got.extend(events.iter().filter(|e| e.id == 1).map(|e| e.token));
    }
    assert_eq!(got, want, "chunked prefill changed the tokens");
    // Cancelled while prefilling: the prefill is dropped.
    g.admit_chunked(&long.batch, vec![spec(3)], 5).unwrap();
    g.cancel(3).unwrap();
    assert!(!g.prefilling());
}
