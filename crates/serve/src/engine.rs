//! The model thread: requests queue here, join the running batch as soon as there is room
//! (continuous batching through `vlm::generator::Generator`), and get their text back through a
//! channel each, token by token. A client that goes away (its channel closed) is cancelled at the
//! next token and its slot goes to whoever waits; a slow reader never stalls the model, because
//! sends never block.

use crate::detok::IncrementalText;
use crate::logprobs::TokenOut;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::mpsc::UnboundedSender;
use vlm::generate::Sampling;
use vlm::generator::{Event, Finish, Generator, SequenceSpec};
use vlm::prompt::Prompt;
use vlm::Checkpoint;

/// One request for the model.
pub struct Job {
    pub prompt: Prompt,
    /// The prompt's length in tokens (images included): longer than the engine's prefill chunk,
    /// it is prefilled a chunk per step.
    pub prompt_tokens: usize,
    /// Completions wanted (OpenAI's `n`); choice i samples with seed `sampling.seed + i`.
    pub n: usize,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Generation stops before the first occurrence of any of these (not included).
    pub stop: Vec<String>,
    /// Generate past EOS until max_tokens (vLLM's extension).
    pub ignore_eos: bool,
    /// Report every sampled token (id, log-probability) with the text: for `logprobs` and
    /// `return_token_ids`.
    pub report_tokens: bool,
    /// The most likely tokens to report at each step (`top_logprobs`).
    pub top_logprobs: usize,
    pub out: UnboundedSender<Out>,
}

/// What the engine tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// New text for choice `choice`, and (when the job reports tokens) the tokens sampled since
    /// the last delta.
    Delta {
        choice: usize,
        text: String,
        tokens: Vec<TokenOut>,
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

/// What the model thread is told.
pub enum Msg {
    Job(Job),
    /// Load new weights from a checkpoint folder: the running batch finishes first (new requests
    /// wait), then the weights are swapped and the waiting requests run on them.
    Reload(Reload),
}

/// A weight reload: the checkpoint folder, its precision, and where the load time (or why it
/// failed) goes.
pub struct Reload {
    pub dir: std::path::PathBuf,
    pub precision: vlm::precision::Precision,
    pub reply: std::sync::mpsc::Sender<Result<f64, String>>,
}

#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
    pub stats: Arc<EngineStats>,
}

impl EngineHandle {
    /// Queues a job; false when the engine has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.send(Msg::Job(job)).is_ok()
    }

    /// Asks for a weight reload; the receiver gets the load time in seconds, or why it failed.
    pub fn reload(
        &self,
        dir: std::path::PathBuf,
        precision: vlm::precision::Precision,
    ) -> Option<std::sync::mpsc::Receiver<Result<f64, String>>> {
        let (reply, rx) = std::sync::mpsc::channel();
        self.tx.send(Msg::Reload(Reload { dir, precision, reply })).ok()?;
        Some(rx)
    }
}

/// Starts the model thread. It runs until every `EngineHandle` is dropped and its work is done.
/// Prompts longer than `prefill_chunk` tokens are prefilled that many tokens per step, between the
/// running batch's tokens.
pub fn spawn(
    ck: Arc<Checkpoint>,
    max_batch: usize,
    prefill_chunk: usize,
) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(EngineStats::default());
    let s = stats.clone();
    let h = std::thread::Builder::new()
        .name("medr1-engine".into())
        .spawn(move || run(ck, rx, max_batch.max(1), prefill_chunk.max(1), s))
        .expect("spawn engine thread");
    (EngineHandle { tx, stats }, h)
}

/// One sequence (a choice of a job) in the running batch.
struct Seq {
    job: usize,
    choice: usize,
    text: IncrementalText,
    /// Bytes of the decoded text already sent.
    sent: usize,
    /// Tokens sampled since the last delta (when the job reports them).
    pending: Vec<TokenOut>,
}

struct JobState {
    out: UnboundedSender<Out>,
    stop: Vec<String>,
    seqs: Vec<u64>,
    report_tokens: bool,
}

fn run(ck: Arc<Checkpoint>, rx: mpsc::Receiver<Msg>, max_batch: usize, prefill_chunk: usize, stats: Arc<EngineStats>) {
    let mut ck = ck;
    let mut carried = VecDeque::new();
    loop {
        let mut engine = Engine::new(&ck, max_batch, prefill_chunk, stats.clone());
        engine.waiting = std::mem::take(&mut carried);
        while engine.receive(&rx) {
            if engine.reload.is_some() && engine.gen.is_empty() {
                break; // drained: swap the weights before admitting anyone else
            }
            if engine.reload.is_none() {
                engine.admit();
            }
            if let Some(events) = engine.step() {
                engine.route(events);
            }
        }
        let Some(Reload { dir, precision, reply }) = engine.reload.take() else { return };
        carried = std::mem::take(&mut engine.waiting);
        drop(engine);
        let t0 = std::time::Instant::now();
        match load_matching(&ck, &dir, precision) {
            Ok(new) => {
                ck = Arc::new(new);
                let _ = reply.send(Ok(t0.elapsed().as_secs_f64()));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// A checkpoint of the same architecture and tokenizer as the one being served.
fn load_matching(
    current: &Checkpoint,
    dir: &std::path::Path,
    precision: vlm::precision::Precision,
) -> Result<Checkpoint, String> {
    let new = Checkpoint::open_as(dir, precision).map_err(|e| format!("{e}"))?;
    if new.config != current.config {
        return Err(format!("{}: its config.json describes another model than the one being served", dir.display()));
    }
    if new.processor.tokenizer.get_vocab_size(true) != current.processor.tokenizer.get_vocab_size(true) {
        return Err(format!("{}: its tokenizer differs from the one being served", dir.display()));
    }
    Ok(new)
}

/// The model thread's state: the running batch, the queue, and what each sequence has sent.
struct Engine<'a> {
    ck: &'a Checkpoint,
    gen: Generator<'a>,
    max_batch: usize,
    /// Prompt tokens prefilled per step for a long prompt.
    prefill_chunk: usize,
    stats: Arc<EngineStats>,
    waiting: VecDeque<Job>,
    seqs: HashMap<u64, Seq>,
    jobs: HashMap<usize, JobState>,
    next_seq: u64,
    next_job: usize,
    /// False once every handle is dropped: finish what is in flight, then stop.
    open: bool,
    /// A reload asked for: nothing new is admitted until the batch has drained.
    reload: Option<Reload>,
}

impl<'a> Engine<'a> {
    fn new(ck: &'a Checkpoint, max_batch: usize, prefill_chunk: usize, stats: Arc<EngineStats>) -> Self {
        Engine {
            ck,
            gen: Self::generator(ck),
            max_batch,
            prefill_chunk,
            stats,
            waiting: VecDeque::new(),
            seqs: HashMap::new(),
            jobs: HashMap::new(),
            next_seq: 0,
            next_job: 0,
            open: true,
            reload: None,
        }
    }

    fn generator(ck: &'a Checkpoint) -> Generator<'a> {
        Generator::new(&ck.model, ck.generation.eos_token_ids.clone(), ck.config.vision_token_ids())
    }

    /// Takes what has been submitted, waiting for work when idle. False: stop (no handle left
    /// and nothing in flight).
    fn receive(&mut self, rx: &mpsc::Receiver<Msg>) -> bool {
        if self.gen.is_empty() && self.waiting.is_empty() && self.reload.is_none() {
            if !self.open {
                return false;
            }
            match rx.recv() {
                Ok(m) => self.take(m),
                Err(_) => return false, // server gone, nothing in flight
            }
        }
        loop {
            match rx.try_recv() {
                Ok(m) => self.take(m),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.open = false;
                    break;
                }
            }
        }
        // Clients that left while queued cost nothing.
        self.waiting.retain(|j| !j.out.is_closed());
        true
    }

    fn take(&mut self, m: Msg) {
        match m {
            Msg::Job(j) => self.waiting.push_back(j),
            Msg::Reload(r) => {
                if self.reload.is_some() {
                    let _ = r.reply.send(Err("another reload is under way".into()));
                } else {
                    self.reload = Some(r);
                }
            }
        }
    }

    /// Moves waiting jobs into the running batch while they fit (a job larger than the whole
    /// batch runs alone); a prompt the model refuses fails its own jobs only. Short prompts are
    /// prefilled together at once; the first long one (over `prefill_chunk` tokens) starts a
    /// chunked prefill when none is under way, and later long ones wait for it (short ones behind
    /// them go ahead).
    fn admit(&mut self) {
        let mut short = Vec::new();
        let mut long = None;
        let mut rows = self.gen.len();
        let mut i = 0;
        while let Some(j) = self.waiting.get(i) {
            if rows > 0 && rows + j.n > self.max_batch {
                break;
            }
            if j.prompt_tokens > self.prefill_chunk {
                if long.is_some() || self.gen.prefilling() {
                    i += 1;
                    continue;
                }
                rows += j.n;
                long = self.waiting.remove(i);
                continue;
            }
            rows += j.n;
            short.extend(self.waiting.remove(i));
        }
        if !short.is_empty() {
            self.start(short, None);
        }
        if let Some(j) = long {
            self.start(vec![j], Some(self.prefill_chunk));
        }
        self.stats.queued.store(self.waiting.len(), Ordering::Relaxed);
        self.stats.active.store(self.gen.len(), Ordering::Relaxed);
    }

    /// Registers `jobs` and prefills their prompts: at once, or `chunk` tokens per step.
    fn start(&mut self, jobs: Vec<Job>, chunk: Option<usize>) {
        let mut prompts = Vec::new();
        let mut specs = Vec::new();
        let mut new_jobs = Vec::new();
        for j in jobs {
            let id = self.next_job;
            self.next_job += 1;
            let mut ids = Vec::new();
            for c in 0..j.n {
                let seq = self.next_seq;
                self.next_seq += 1;
                prompts.push(j.prompt.clone());
                let sampling = Sampling { seed: j.sampling.seed.wrapping_add(c as u64), ..j.sampling.clone() };
                specs.push(SequenceSpec {
                    id: seq,
                    sampling,
                    max_new_tokens: j.max_tokens,
                    ignore_eos: j.ignore_eos,
                    top_logprobs: j.top_logprobs,
                });
                self.seqs.insert(
                    seq,
                    Seq { job: id, choice: c, text: IncrementalText::default(), sent: 0, pending: Vec::new() },
                );
                ids.push(seq);
            }
            self.jobs.insert(id, JobState { out: j.out, stop: j.stop, seqs: ids, report_tokens: j.report_tokens });
            new_jobs.push(id);
        }
        let (ck, gen) = (self.ck, &mut self.gen);
        let admitted = std::panic::catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<()> {
            let enc = ck.processor.encode(&prompts, None, ck.model.device())?;
            match chunk {
                None => gen.admit(&enc.batch, specs)?,
                Some(c) => gen.admit_chunked(&enc.batch, specs, c)?,
            }
            Ok(())
        }));
        let failure = match admitted {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("the model failed on this input".to_string()),
        };
        if let Some(msg) = failure {
            for id in new_jobs {
                self.fail_job(id, &msg);
            }
        }
    }

    /// One token for every running sequence. A failed step fails every job in flight and starts
    /// over with an empty batch; None when there was nothing to do or the step failed.
    fn step(&mut self) -> Option<Vec<Event>> {
        if self.gen.is_empty() {
            return None;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.gen.step())) {
            Ok(Ok(events)) => {
                self.stats.generated_tokens.fetch_add(events.len(), Ordering::Relaxed);
                Some(events)
            }
            failed => {
                let msg = match failed {
                    Ok(Err(e)) => format!("generation failed: {e}"),
                    _ => "generation failed".to_string(),
                };
                for (_, js) in self.jobs.drain() {
                    let _ = js.out.send(Out::Error(msg.clone()));
                }
                self.seqs.clear();
                self.gen = Self::generator(self.ck);
                None
            }
        }
    }

    /// Sends each event's new text to its client, ends finished choices (EOS, length or a stop
    /// string), and cancels every sequence of a client that has gone away.
    fn route(&mut self, events: Vec<Event>) {
        for e in events {
            let Some(seq) = self.seqs.get_mut(&e.id) else { continue };
            let job_id = seq.job;
            let Some(js) = self.jobs.get(&job_id) else { continue };
            let tokenizer = &self.ck.processor.tokenizer;
            seq.text.push(tokenizer, e.token);
            if js.report_tokens {
                seq.pending.push(TokenOut { id: e.token, logprob: e.logprob, top: e.top });
            }
            let text = if e.finish.is_some() { seq.text.finish(tokenizer) } else { seq.text.text() };
            // The earliest stop string ends the text before it. Only the tail can hold a new
            // one: what was sent was checked before.
            let from = seq.sent.saturating_sub(js.stop.iter().map(|s| s.len()).max().unwrap_or(0));
            let from = (0..=from).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let stop_at = js.stop.iter().filter_map(|s| text[from..].find(s.as_str()).map(|p| from + p)).min();
            let finish = match (stop_at, e.finish) {
                (Some(_), _) | (None, Some(Finish::Eos)) => Some("stop"),
                (None, Some(Finish::Length)) => Some("length"),
                (None, None) => None,
            };
            let end = match (stop_at, finish) {
                (Some(p), _) => p,
                (None, Some(_)) => text.len(),
                // Hold back what could still turn into a stop string (the decoder already holds
                // back a partial UTF-8 character).
                (None, None) => {
                    let hold = js.stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
                    let mut end = text.len().saturating_sub(hold);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    end
                }
            };
            let mut alive = true;
            // A finished choice flushes its last tokens even with no new text.
            if end > seq.sent || (finish.is_some() && !seq.pending.is_empty()) {
                let tokens = std::mem::take(&mut seq.pending);
                let delta = text[seq.sent..end.max(seq.sent)].to_string();
                alive = js.out.send(Out::Delta { choice: seq.choice, text: delta, tokens }).is_ok();
                seq.sent = end.max(seq.sent);
            }
            if let Some(reason) = finish {
                let completion_tokens = seq.text.tokens();
                alive &= js.out.send(Out::Finish { choice: seq.choice, reason, completion_tokens }).is_ok();
                if e.finish.is_none() {
                    let _ = self.gen.cancel(e.id);
                }
                self.seqs.remove(&e.id);
                let js = self.jobs.get_mut(&job_id).unwrap();
                js.seqs.retain(|&s| s != e.id);
                if js.seqs.is_empty() {
                    self.jobs.remove(&job_id);
                }
            }
            if !alive {
                // The client went away: stop all of its sequences now.
                self.cancel_job(job_id);
            }
        }
        self.stats.active.store(self.gen.len(), Ordering::Relaxed);
    }

    /// Removes a job and its sequences from the batch, returning its client's channel.
    fn remove_job(&mut self, id: usize) -> Option<UnboundedSender<Out>> {
        let js = self.jobs.remove(&id)?;
        for s in js.seqs {
            self.seqs.remove(&s);
            let _ = self.gen.cancel(s);
        }
        Some(js.out)
    }

    /// A job the model could not take: its client gets `msg`.
    fn fail_job(&mut self, id: usize, msg: &str) {
        if let Some(out) = self.remove_job(id) {
            let _ = out.send(Out::Error(msg.to_string()));
        }
    }

    /// A job whose client went away: its sequences stop now, counted as cancelled.
    fn cancel_job(&mut self, id: usize) {
        let n = self.jobs.get(&id).map_or(0, |js| js.seqs.len());
        if self.remove_job(id).is_some() {
            self.stats.cancelled.fetch_add(n, Ordering::Relaxed);
        }
    }
}
