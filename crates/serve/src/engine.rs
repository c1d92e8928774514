//! The model thread: requests queue here, join the running batch as soon as there is room
//! (continuous batching through `vlm::generator::Generator`), and get their text back through a
//! channel each, token by token. A client that goes away (its channel closed) is cancelled at the
//! next token and its slot goes to whoever waits; a slow reader never stalls the model, because
//! sends never block.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::mpsc::UnboundedSender;
use vlm::generate::Sampling;
use vlm::generator::{Finish, Generator, SequenceSpec};
use vlm::prompt::Prompt;
use vlm::Checkpoint;

/// One request for the model.
pub struct Job {
    pub prompt: Prompt,
    /// Completions wanted (OpenAI's `n`); choice i samples with seed `sampling.seed + i`.
    pub n: usize,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Generation stops before the first occurrence of any of these (not included).
    pub stop: Vec<String>,
    /// Generate past EOS until max_tokens (vLLM's extension).
    pub ignore_eos: bool,
    pub out: UnboundedSender<Out>,
}

/// What the engine tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// New text for choice `choice`.
    Delta {
        choice: usize,
        text: String,
    },
    /// Choice `choice` is complete: `reason` is "stop" (EOS or a stop string) or "length".
    Finish {
        choice: usize,
        reason: &'static str,
        completion_tokens: usize,
    },
    Error(String),
}

#[derive(Default)]
pub struct EngineStats {
    /// Sequences in the running batch.
    pub active: AtomicUsize,
    /// Requests waiting for room.
    pub queued: AtomicUsize,
    /// Tokens generated since start.
    pub generated_tokens: AtomicUsize,
    /// Sequences stopped because their client went away.
    pub cancelled: AtomicUsize,
}

#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    pub stats: Arc<EngineStats>,
}

impl EngineHandle {
    /// Queues a job; false when the engine has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

/// Starts the model thread. It runs until every `EngineHandle` is dropped and its work is done.
pub fn spawn(ck: Arc<Checkpoint>, max_batch: usize) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(EngineStats::default());
    let s = stats.clone();
    let h = std::thread::Builder::new()
        .name("medr1-engine".into())
        .spawn(move || run(ck, rx, max_batch.max(1), s))
        .expect("spawn engine thread");
    (EngineHandle { tx, stats }, h)
}

struct Seq {
    job: usize,
    choice: usize,
    tokens: Vec<u32>,
    /// Bytes of the decoded text already sent.
    sent: usize,
}

struct JobState {
    out: UnboundedSender<Out>,
    stop: Vec<String>,
    seqs: Vec<u64>,
}

fn run(ck: Arc<Checkpoint>, rx: mpsc::Receiver<Job>, max_batch: usize, stats: Arc<EngineStats>) {
    let model = &ck.model;
    let eos = ck.generation.eos_token_ids.clone();
    let suppress = ck.config.vision_token_ids();
    let mut gen = Generator::new(model, eos.clone(), suppress.clone());
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut seqs: HashMap<u64, Seq> = HashMap::new();
    let mut jobs: HashMap<usize, JobState> = HashMap::new();
    let (mut next_seq, mut next_job) = (0u64, 0usize);
    let mut open = true;
    loop {
        if gen.is_empty() && waiting.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(j) => waiting.push_back(j),
                Err(_) => return, // server gone, nothing in flight
            }
        }
        loop {
            match rx.try_recv() {
                Ok(j) => waiting.push_back(j),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Clients that left while queued cost nothing.
        waiting.retain(|j| !j.out.is_closed());

        // Admit what fits (a job larger than the whole batch runs alone).
        let mut admit = Vec::new();
        let mut rows = gen.len();
        while let Some(j) = waiting.front() {
            if rows > 0 && rows + j.n > max_batch {
                break;
            }
            rows += j.n;
            admit.push(waiting.pop_front().unwrap());
        }
        if !admit.is_empty() {
            let mut prompts = Vec::new();
            let mut specs = Vec::new();
            let mut new_jobs = Vec::new();
            for j in admit {
                let id = next_job;
                next_job += 1;
                let mut ids = Vec::new();
                for c in 0..j.n {
                    let seq = next_seq;
                    next_seq += 1;
                    prompts.push(j.prompt.clone());
                    let sampling = Sampling { seed: j.sampling.seed.wrapping_add(c as u64), ..j.sampling.clone() };
                    specs.push(SequenceSpec {
                        id: seq,
                        sampling,
                        max_new_tokens: j.max_tokens,
                        ignore_eos: j.ignore_eos,
                    });
                    seqs.insert(seq, Seq { job: id, choice: c, tokens: vec![], sent: 0 });
                    ids.push(seq);
                }
                jobs.insert(id, JobState { out: j.out, stop: j.stop, seqs: ids });
                new_jobs.push(id);
            }
            let admitted = std::panic::catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<()> {
                let enc = ck.processor.encode(&prompts, None, model.device())?;
                gen.admit(&enc.batch, specs)?;
                Ok(())
            }));
            let failure = match admitted {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(_) => Some("the model failed on this input".to_string()),
            };
            if let Some(msg) = failure {
                for id in new_jobs {
                    if let Some(js) = jobs.remove(&id) {
                        let _ = js.out.send(Out::Error(msg.clone()));
                        for s in js.seqs {
                            seqs.remove(&s);
                            let _ = gen.cancel(s);
                        }
                    }
                }
            }
        }
        stats.queued.store(waiting.len(), Ordering::Relaxed);
        stats.active.store(gen.len(), Ordering::Relaxed);
        if gen.is_empty() {
            continue;
        }

        let events = match std::panic::catch_unwind(AssertUnwindSafe(|| gen.step())) {
            Ok(Ok(ev)) => ev,
            failed => {
                let msg = match failed {
                    Ok(Err(e)) => format!("generation failed: {e}"),
                    _ => "generation failed".to_string(),
                };
                for (_, js) in jobs.drain() {
                    let _ = js.out.send(Out::Error(msg.clone()));
                }
                seqs.clear();
                gen = Generator::new(model, eos.clone(), suppress.clone());
                continue;
            }
        };
        stats.generated_tokens.fetch_add(events.len(), Ordering::Relaxed);
        for e in events {
            let Some(seq) = seqs.get_mut(&e.id) else { continue };
            seq.tokens.push(e.token);
            let job_id = seq.job;
            let Some(js) = jobs.get(&job_id) else { continue };
            let text = ck.processor.tokenizer.decode(&seq.tokens, true).unwrap_or_default();
            // The earliest stop string ends the text before it.
            let stop_at = js.stop.iter().filter_map(|s| text.find(s.as_str())).min();
            let finish = match (stop_at, e.finish) {
                (Some(_), _) | (None, Some(Finish::Eos)) => Some("stop"),
                (None, Some(Finish::Length)) => Some("length"),
                (None, None) => None,
            };
            let end = match (stop_at, finish) {
                (Some(p), _) => p,
                (None, Some(_)) => text.len(),
                // Hold back what could still turn into a stop string, and a trailing partial
                // UTF-8 character (decoded as U+FFFD until its remaining bytes arrive).
                (None, None) => {
                    let hold = js.stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
                    let mut end = text.trim_end_matches('\u{FFFD}').len().saturating_sub(hold);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    end
                }
            };
            let mut alive = true;
            // Byte-level decoding is prefix-stable; should a tokenizer ever rewrite what was sent,
            // send nothing rather than a slice across a character.
            if !text.is_char_boundary(seq.sent.min(text.len())) {
                seq.sent = end;
            }
            if end > seq.sent {
                alive = js.out.send(Out::Delta { choice: seq.choice, text: text[seq.sent..end].to_string() }).is_ok();
                seq.sent = end;
            }
            if let Some(reason) = finish {
                alive &= js
                    .out
                    .send(Out::Finish { choice: seq.choice, reason, completion_tokens: seq.tokens.len() })
                    .is_ok();
                if e.finish.is_none() {
                    let _ = gen.cancel(e.id);
                }
                seqs.remove(&e.id);
                let js = jobs.get_mut(&job_id).unwrap();
                js.seqs.retain(|&s| s != e.id);
                if js.seqs.is_empty() {
                    jobs.remove(&job_id);
                }
            }
            if !alive {
                // The client went away: stop all of its sequences now.
                if let Some(js) = jobs.remove(&job_id) {
                    for s in js.seqs {
                        seqs.remove(&s);
                        let _ = gen.cancel(s);
                        stats.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        stats.active.store(gen.len(), Ordering::Relaxed);
    }
}
