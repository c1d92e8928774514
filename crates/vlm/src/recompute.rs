//! Per-layer activation recomputation ("gradient checkpointing") for training on little memory.
//!
//! A recomputed layer runs forward as one custom op, so the autograd graph keeps only the layer's
//! input, not its intermediates. In the backward pass the op runs the layer again on its input,
//! now tracked, and backpropagates the incoming gradient through it: the input's gradient goes
//! back into the graph, and the gradients of the parameters used inside the layer (which the
//! outer graph never saw) are deposited in [`SideGrads`]; [`backward`] merges them into the
//! returned gradient store. The layer is computed twice, with the same kernels on the same
//! inputs, so the gradients equal those of the plain graph.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, TensorId, Var};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Parameter gradients produced inside recomputed layers during one backward pass.
#[derive(Debug, Default)]
pub struct SideGrads(Mutex<HashMap<TensorId, Tensor>>);

impl SideGrads {
    fn add(&self, grads: &GradStore, params: &[Tensor]) -> Result<()> {
        let mut m = self.0.lock().unwrap();
        for p in params {
            if let Some(g) = grads.get(p) {
                let total = match m.remove(&p.id()) {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                };
                m.insert(p.id(), total);
            }
        }
        Ok(())
    }

    /// Moves the deposited gradients into `grads` (adding to any already there).
    pub fn drain_into(&self, grads: &mut GradStore) -> Result<()> {
        for (id, g) in self.0.lock().unwrap().drain() {
            let total = match grads.get_id(id) {
                Some(prev) => (prev + &g)?,
                None => g,
            };
            grads.insert_id(id, total);
        }
        Ok(())
    }
}

type LayerFn = dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync;

struct Recomputed {
    f: Arc<LayerFn>,
    /// The tracked parameters the layer uses (what may receive gradients inside it).
    params: Vec<Tensor>,
    side: Arc<SideGrads>,
}

fn from_storage(storage: &CpuStorage, layout: &Layout) -> Result<Tensor> {
    let len = match storage {
        CpuStorage::F32(v) => v.len(),
        CpuStorage::BF16(v) => v.len(),
        CpuStorage::F16(v) => v.len(),
        CpuStorage::F64(v) => v.len(),
        _ => candle_core::bail!("recompute: unsupported dtype"),
    };
    if !layout.is_contiguous() {
        candle_core::bail!("recompute: the input must be contiguous");
    }
    let x = Tensor::from_storage(
        candle_core::Storage::Cpu(storage.clone()),
        Shape::from(len),
        candle_core::op::BackpropOp::none(),
        false,
    );
    x.narrow(0, layout.start_offset(), layout.shape().elem_count())?.reshape(layout.shape())
}

impl CustomOp1 for Recomputed {
    fn name(&self) -> &'static str {
        "recomputed-layer"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = from_storage(storage, layout)?;
        // The parameters are tracked, so this builds a graph; it is dropped with `y` below.
        let y = (self.f)(&x)?.detach().contiguous()?;
        let shape = y.shape().clone();
        let (st, l) = y.storage_and_layout();
        match &*st {
            candle_core::Storage::Cpu(cpu) if l.start_offset() == 0 => Ok((cpu.clone(), shape)),
            _ => candle_core::bail!("recompute: unexpected output layout"),
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let x = Var::from_tensor(&arg.detach())?;
        let y = (self.f)(x.as_tensor())?;
        let grads = (y * grad_res.detach())?.sum_all()?.backward()?;
        self.side.add(&grads, &self.params)?;
        Ok(grads.get(x.as_tensor()).cloned())
    }
}

/// Runs `f` on `x` as one recomputed op when training (some parameter is tracked), plainly
/// otherwise.
pub fn checkpointed(x: &Tensor, params: Vec<Tensor>, side: &Arc<SideGrads>, f: Arc<LayerFn>) -> Result<Tensor> {
    let params: Vec<Tensor> = params.into_iter().filter(|p| p.track_op()).collect();
    if params.is_empty() && !x.track_op() {
        return f(x);
    }
    // An untracked input (a frozen embedding under LoRA) still needs the op on the graph, or the
    // layer's own parameters would never get their gradients: wrap it in a variable.
    let x = if x.track_op() { x.contiguous()? } else { Var::from_tensor(&x.contiguous()?)?.as_tensor().clone() };
    x.apply_op1_arc(Arc::new(Box::new(Recomputed { f, params, side: side.clone() })))
}

/// `loss.backward()`, plus the gradients deposited by recomputed layers.
pub fn backward(loss: &Tensor, side: Option<&Arc<SideGrads>>) -> Result<GradStore> {
    let mut grads = loss.backward()?;
    if let Some(s) = side {
        s.drain_into(&mut grads)?;
    }
    Ok(grads)
}
