//! Procedural images for each modality. Every picture is drawn from a [`Scene`]: the region
//! sets the anatomy, the finding adds one larger lesion, the grade sets how many small lesions
//! ("spots") there are, and the attribute where they lie (or, in microscopy, how many cells the
//! field holds). Positions, sizes and noise come from the scene's seed through separate random
//! streams, so changing one property leaves everything the others drew where it was.

use super::canvas::{grey, Canvas, Color};
use super::vocab::{DENSITY_COUNTS, GRADE_COUNTS};
use super::Scene;
use crate::taxonomy::Modality;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

/// Random streams, one per aspect of the picture.
const ANATOMY: u64 = 1;
const FINDING: u64 = 2;
const SPOTS: u64 = 3;
const CELLS: u64 = 4;
const NOISE: u64 = 5;

fn stream(seed: u64, s: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(s);
    r
}

/// Where lesions may go: an ellipse (cx, cy, rx, ry) inside the anatomy.
#[derive(Clone, Copy)]
struct Zone {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
}

impl Zone {
    /// A point in the zone; `side` 0 keeps it left of centre, 1 right, None anywhere.
    fn point(&self, rng: &mut ChaCha8Rng, side: Option<usize>) -> (f32, f32) {
        loop {
            let a: f32 = rng.random_range(-1.0..1.0);
            let b: f32 = rng.random_range(-1.0..1.0);
            if a * a + b * b > 0.85 {
                continue;
            }
            match side {
                Some(0) if a > -0.15 => continue,
                Some(1) if a < 0.15 => continue,
                _ => return (self.cx + a * self.rx, self.cy + b * self.ry),
            }
        }
    }
}

/// Draws the scene at `size` x `size` pixels.
pub fn render(scene: &Scene, size: usize) -> Canvas {
    let (mut c, zone) = match scene.modality {
        Modality::Ct => ct(scene, size),
        Modality::Mri => mri(scene, size),
        Modality::XRay => xray(scene, size),
        Modality::Ultrasound => ultrasound(scene, size),
        Modality::Fundus => fundus(scene, size),
        Modality::Oct => oct(scene, size),
        Modality::Dermoscopy => dermoscopy(scene, size),
        Modality::Microscopy => microscopy(scene, size),
    };
    finish(&mut c, scene, zone);
    c
}

/// The finding's centre and radius: drawn whether or not there is a finding, so that the spots
/// (which avoid it) sit in the same places either way.
fn finding_place(scene: &Scene, zone: Zone) -> (f32, f32, f32) {
    let mut r = stream(scene.seed, FINDING);
    let (x, y) = zone.point(&mut r, None);
    // Pull toward the zone centre so the finding stays inside the anatomy.
    let (x, y) = (zone.cx + 0.5 * (x - zone.cx), zone.cy + 0.5 * (y - zone.cy));
    (x, y, r.random_range(0.065..0.085))
}

/// Positions of the grade's small lesions, on the attribute's side, clear of the finding.
fn spot_places(scene: &Scene, zone: Zone) -> Vec<(f32, f32)> {
    let mut r = stream(scene.seed, SPOTS);
    let (lo, hi) = GRADE_COUNTS[scene.grade];
    let n = r.random_range(lo..=hi);
    let (fx, fy, fr) = finding_place(scene, zone);
    let mut out: Vec<(f32, f32)> = Vec::new();
    let mut tries = 0;
    while out.len() < n {
        let side = if scene.modality == Modality::Microscopy {
            None
        } else {
            // "Both sides": alternate, so each side has at least one.
            Some(if scene.attribute == 2 { out.len() % 2 } else { scene.attribute })
        };
        let (x, y) = zone.point(&mut r, side);
        tries += 1;
        let clear_of_finding = ((x - fx).powi(2) + (y - fy).powi(2)).sqrt() > fr + 0.04;
        let clear_of_spots = out.iter().all(|&(a, b)| ((x - a).powi(2) + (y - b).powi(2)).sqrt() > 0.045);
        if (clear_of_finding && clear_of_spots) || tries > 2000 {
            out.push((x, y));
        }
    }
    out
}

/// Noise and the modality's point-spread, after everything is drawn.
fn finish(c: &mut Canvas, scene: &Scene, _zone: Zone) {
    let mut r = stream(scene.seed, NOISE);
    match scene.modality {
        Modality::Ct => c.noise(&mut r, 0.02),
        Modality::Mri => {
            c.noise(&mut r, 0.025);
            for v in &mut c.data {
                *v = v.abs(); // magnitude images: noise never goes below zero
            }
        }
        Modality::XRay => {
            c.blur(1);
            c.noise(&mut r, 0.015);
        }
        Modality::Ultrasound => {
            c.blur(1);
            let fan = fan_mask();
            c.speckle(&mut r, 0.7, fan);
        }
        Modality::Oct => {
            c.speckle(&mut r, 0.6, |_, _| true);
            c.blur(1);
        }
        Modality::Fundus => {
            c.blur(1);
            c.noise(&mut r, 0.01);
        }
        Modality::Dermoscopy | Modality::Microscopy => {
            c.blur(1);
            c.noise(&mut r, 0.012);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CT: Hounsfield units shown in a soft-tissue window (level 40, width 400).

fn hu(h: f32) -> Color {
    grey(((h + 160.0) / 400.0).clamp(0.0, 1.0))
}

fn ct(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let j = |r: &mut ChaCha8Rng, s: f32| r.random_range(-s..s);
    let mut c = Canvas::new(size, 1, hu(-1000.0));
    let (cx, cy) = (0.5 + j(&mut a, 0.02), 0.5 + j(&mut a, 0.02));
    let zone = match scene.region {
        0 => {
            // Head: skull (bone), brain, two lateral ventricles (CSF).
            let r = 0.37 + j(&mut a, 0.02);
            c.ellipse(cx, cy, r * 0.88, r, 0.0, 1.0, hu(1000.0));
            c.ellipse(cx, cy, r * 0.80, r * 0.92, 0.0, 1.0, hu(35.0));
            c.ellipse(cx - 0.05, cy - 0.02, 0.03, 0.09, 0.25, 1.0, hu(5.0));
            c.ellipse(cx + 0.05, cy - 0.02, 0.03, 0.09, -0.25, 1.0, hu(5.0));
            Zone { cx, cy, rx: r * 0.62, ry: r * 0.72 }
        }
        1 => {
            // Chest: body wall, two lungs (air), heart, spine, ribs.
            let (rx, ry) = (0.44 + j(&mut a, 0.02), 0.31 + j(&mut a, 0.02));
            c.ellipse(cx, cy, rx, ry, 0.0, 1.0, hu(-90.0));
            c.ellipse(cx, cy, rx - 0.03, ry - 0.03, 0.0, 1.0, hu(40.0));
            c.ellipse(cx - 0.18, cy - 0.02, 0.15, 0.22, 0.1, 1.0, hu(-850.0));
            c.ellipse(cx + 0.18, cy - 0.02, 0.15, 0.22, -0.1, 1.0, hu(-850.0));
            c.ellipse(cx - 0.03, cy + 0.02, 0.09, 0.11, 0.3, 1.0, hu(45.0));
            c.circle(cx, cy + ry - 0.08, 0.05, 1.0, hu(700.0));
            for k in 0..10 {
                let t = PI * (0.1 + 0.8 * k as f32 / 9.0);
                c.circle(
                    cx - rx * 0.95 * t.cos(),
                    cy - ry * 0.93 * t.sin().abs() * if k % 2 == 0 { 1.0 } else { -0.9 },
                    0.012,
                    1.0,
                    hu(600.0),
                );
            }
            Zone { cx, cy, rx: rx * 0.72, ry: ry * 0.7 }
        }
        _ => {
            // Abdomen: fat ring, liver on the image's left (patient's right), kidneys, spine, gas.
            let (rx, ry) = (0.42 + j(&mut a, 0.02), 0.33 + j(&mut a, 0.02));
            c.ellipse(cx, cy, rx, ry, 0.0, 1.0, hu(-100.0));
            c.ellipse(cx, cy, rx - 0.05, ry - 0.05, 0.0, 1.0, hu(30.0));
            c.ellipse(cx - 0.16, cy - 0.06, 0.17, 0.15, 0.3, 1.0, hu(60.0));
            c.ellipse(cx - 0.12, cy + 0.15, 0.04, 0.06, 0.3, 1.0, hu(35.0));
            c.ellipse(cx + 0.12, cy + 0.15, 0.04, 0.06, -0.3, 1.0, hu(35.0));
            c.circle(cx, cy + ry - 0.1, 0.05, 1.0, hu(700.0));
            for _ in 0..4 {
                let (x, y) = (cx + a.random_range(0.02..0.25), cy + a.random_range(-0.15..0.05));
                c.circle(x, y, a.random_range(0.015..0.03), 1.0, hu(-900.0));
            }
            Zone { cx, cy, rx: rx * 0.72, ry: ry * 0.68 }
        }
    };
    let (fx, fy, fr) = finding_place(scene, zone);
    match scene.finding {
        1 => {
            c.circle(fx, fy, fr, 2.0, hu(130.0)); // enhancing solid tumour
            c.circle(fx + 0.01, fy - 0.01, fr * 0.4, 2.0, hu(90.0));
        }
        2 => {
            c.circle(fx, fy, fr + 0.006, 1.0, hu(80.0)); // thin wall
            c.circle(fx, fy, fr, 1.0, hu(0.0)); // water density
        }
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.013, 1.0, hu(1200.0));
    }
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// MRI: T2-weighted look: fluid bright, cortical bone dark, fat bright.

fn mri(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let j = |r: &mut ChaCha8Rng, s: f32| r.random_range(-s..s);
    let mut c = Canvas::new(size, 1, grey(0.02));
    let (cx, cy) = (0.5 + j(&mut a, 0.02), 0.5 + j(&mut a, 0.02));
    let zone = match scene.region {
        0 => {
            // Brain (axial): scalp fat, dark skull, grey matter with folded cortex, bright ventricles.
            let r = 0.38 + j(&mut a, 0.02);
            c.ellipse(cx, cy, r * 0.86, r, 0.0, 1.0, grey(0.75));
            c.ellipse(cx, cy, r * 0.82, r * 0.96, 0.0, 1.0, grey(0.08));
            c.ellipse(cx, cy, r * 0.76, r * 0.9, 0.0, 1.0, grey(0.5));
            let phase = a.random_range(0.0..PI);
            let (ix, iy) = (r * 0.76, r * 0.9);
            c.fill((cx - ix, cy - iy, cx + ix, cy + iy), 1.0, grey(0.36), 1.0, |u, v| {
                let (du, dv) = ((u - cx) / ix, (v - cy) / iy);
                let rr = (du * du + dv * dv).sqrt();
                let th = dv.atan2(du);
                // A ribbon of white matter inside a wavy cortical edge.
                let edge = 0.78 + 0.06 * (14.0 * th + phase).sin();
                (rr - edge) * 0.1
            });
            c.ellipse(cx - 0.05, cy - 0.02, 0.025, 0.09, 0.25, 1.0, grey(0.92));
            c.ellipse(cx + 0.05, cy - 0.02, 0.025, 0.09, -0.25, 1.0, grey(0.92));
            Zone { cx, cy, rx: r * 0.6, ry: r * 0.7 }
        }
        1 => {
            // Knee (coronal): femoral condyles above, tibial plateau below, bright marrow fat,
            // dark cortex, grey cartilage and muscle.
            c.ellipse(cx, cy, 0.36, 0.46, 0.0, 1.0, grey(0.3));
            c.ellipse(cx - 0.11, cy - 0.1, 0.12, 0.12, 0.0, 1.0, grey(0.05));
            c.ellipse(cx + 0.11, cy - 0.1, 0.12, 0.12, 0.0, 1.0, grey(0.05));
            c.ellipse(cx, cy - 0.3, 0.16, 0.22, 0.0, 1.0, grey(0.05));
            c.ellipse(cx - 0.11, cy - 0.1, 0.105, 0.105, 0.0, 1.0, grey(0.78));
            c.ellipse(cx + 0.11, cy - 0.1, 0.105, 0.105, 0.0, 1.0, grey(0.78));
            c.ellipse(cx, cy - 0.3, 0.145, 0.2, 0.0, 1.0, grey(0.78));
            c.ellipse(cx, cy + 0.26, 0.22, 0.2, 0.0, 1.0, grey(0.05));
            c.ellipse(cx, cy + 0.26, 0.205, 0.185, 0.0, 1.0, grey(0.75));
            c.line(cx - 0.2, cy + 0.045, cx + 0.2, cy + 0.045, 0.02, grey(0.55));
            Zone { cx, cy: cy + 0.05, rx: 0.22, ry: 0.3 }
        }
        _ => {
            // Spine (sagittal): a column of vertebral bodies, bright discs, the CSF-filled canal.
            c.ellipse(cx, cy, 0.4, 0.5, 0.0, 1.0, grey(0.28));
            let x0 = cx - 0.08;
            for k in 0..6 {
                let y = 0.08 + k as f32 * 0.165 + j(&mut a, 0.01);
                c.fill((x0 - 0.09, y - 0.07, x0 + 0.09, y + 0.07), 1.0, grey(0.55), 1.0, |u, v| {
                    let (dx, dy) = ((u - x0).abs() - 0.075, (v - y).abs() - 0.06);
                    dx.max(dy).min(0.0) + (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt()
                });
                c.ellipse(x0, y + 0.083, 0.07, 0.015, 0.0, 1.0, grey(0.85));
            }
            c.line(cx + 0.1, 0.0, cx + 0.1, 1.0, 0.07, grey(0.9));
            c.line(cx + 0.1, 0.0, cx + 0.1, 1.0, 0.03, grey(0.4));
            Zone { cx: cx - 0.02, cy, rx: 0.2, ry: 0.36 }
        }
    };
    let (fx, fy, fr) = finding_place(scene, zone);
    match scene.finding {
        1 => {
            c.circle(fx, fy, fr + 0.01, 1.0, grey(0.12)); // dark rim
            c.circle(fx, fy, fr, 2.0, grey(0.97));
        }
        2 => c.circle(fx, fy, fr, 2.0, grey(0.04)),
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.013, 1.0, grey(1.0));
    }
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// X-ray: a projection; bone bright, air dark.

fn xray(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let j = |r: &mut ChaCha8Rng, s: f32| r.random_range(-s..s);
    let mut c = Canvas::new(size, 1, grey(0.05));
    let (cx, cy) = (0.5 + j(&mut a, 0.02), 0.5 + j(&mut a, 0.02));
    let zone = match scene.region {
        0 => {
            // Chest PA: soft tissue, dark lungs, heart shadow, ribs and clavicles.
            c.ellipse(cx, cy + 0.05, 0.46, 0.5, 0.0, 3.0, grey(0.42));
            c.ellipse(cx - 0.19, cy, 0.15, 0.3, 0.08, 3.0, grey(0.16));
            c.ellipse(cx + 0.19, cy, 0.15, 0.3, -0.08, 3.0, grey(0.16));
            c.ellipse(cx + 0.04, cy + 0.13, 0.13, 0.12, 0.2, 3.0, grey(0.5));
            for k in 0..6 {
                let y = cy - 0.24 + k as f32 * 0.085;
                for s in [-1.0f32, 1.0] {
                    let pts: Vec<(f32, f32)> = (0..8)
                        .map(|t| {
                            let t = t as f32 / 7.0;
                            (cx + s * (0.03 + 0.3 * t), y + 0.06 * (PI * t).sin() - 0.02 * t)
                        })
                        .collect();
                    c.polyline(&pts, 0.018, grey(0.55));
                }
            }
            c.line(cx - 0.32, cy - 0.33, cx - 0.04, cy - 0.28, 0.03, grey(0.65));
            c.line(cx + 0.32, cy - 0.33, cx + 0.04, cy - 0.28, 0.03, grey(0.65));
            c.line(cx, cy - 0.45, cx, cy + 0.45, 0.05, grey(0.5));
            Zone { cx, cy, rx: 0.3, ry: 0.24 }
        }
        1 => {
            // Hand PA: palm and fingers, metacarpals and phalanges.
            c.ellipse(cx, cy + 0.2, 0.2, 0.22, 0.0, 3.0, grey(0.32));
            let base = [(-0.16, 0.28), (-0.08, 0.4), (0.0, 0.44), (0.08, 0.4), (0.17, 0.3)];
            for (k, (dx, len)) in base.iter().enumerate() {
                let x0 = cx + dx;
                let ang: f32 = if k == 0 { -0.6 } else { 0.08 * (k as f32 - 2.0) };
                let (ex, ey) = (x0 + len * ang.sin(), cy + 0.1 - len * ang.cos());
                c.line(x0, cy + 0.18, ex, ey, 0.07, grey(0.32));
                // Bones: metacarpal then phalanges with joint gaps.
                let seg = 4;
                for s in 0..seg {
                    let t0 = s as f32 / seg as f32 + 0.03;
                    let t1 = (s + 1) as f32 / seg as f32 - 0.03;
                    let p = |t: f32| (x0 + (ex - x0) * t, cy + 0.32 + (ey - cy - 0.32) * t);
                    let (a0, b0) = p(t0);
                    let (a1, b1) = p(t1);
                    c.line(a0, b0, a1, b1, 0.032, grey(0.82));
                }
            }
            Zone { cx, cy: cy + 0.1, rx: 0.18, ry: 0.2 }
        }
        _ => {
            // Pelvis AP: soft tissue, iliac wings, sacrum, femoral heads and necks, pubic rami.
            c.ellipse(cx, cy, 0.48, 0.42, 0.0, 3.0, grey(0.36));
            c.ellipse(cx - 0.2, cy - 0.12, 0.17, 0.2, -0.4, 2.0, grey(0.66));
            c.ellipse(cx + 0.2, cy - 0.12, 0.17, 0.2, 0.4, 2.0, grey(0.66));
            c.ellipse(cx, cy - 0.05, 0.08, 0.15, 0.0, 2.0, grey(0.6));
            c.circle(cx - 0.25, cy + 0.14, 0.07, 2.0, grey(0.78));
            c.circle(cx + 0.25, cy + 0.14, 0.07, 2.0, grey(0.78));
            c.line(cx - 0.25, cy + 0.14, cx - 0.33, cy + 0.42, 0.07, grey(0.75));
            c.line(cx + 0.25, cy + 0.14, cx + 0.33, cy + 0.42, 0.07, grey(0.75));
            c.ring(cx - 0.09, cy + 0.22, 0.08, 0.06, 0.025, grey(0.7));
            c.ring(cx + 0.09, cy + 0.22, 0.08, 0.06, 0.025, grey(0.7));
            Zone { cx, cy: cy - 0.02, rx: 0.3, ry: 0.2 }
        }
    };
    let (fx, fy, fr) = finding_place(scene, zone);
    match scene.finding {
        1 => c.circle(fx, fy, fr, 4.0, grey(0.8)),
        2 => {
            // A fracture line with a small step across it.
            let ang = stream(scene.seed, FINDING).random_range(0.3..1.2f32);
            let (dx, dy) = (fr * 1.6 * ang.cos(), fr * 1.6 * ang.sin());
            c.line(fx - dx, fy - dy, fx + dx, fy + dy, 0.05, grey(0.75));
            c.line(fx - dx, fy - dy + 0.004, fx + dx, fy + dy - 0.004, 0.012, grey(0.02));
        }
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.02, 1.0, grey(0.95));
    }
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// Ultrasound: a sector scan from a probe at the top, with speckle.

const APEX: (f32, f32) = (0.5, 0.04);
const FAN_HALF_ANGLE: f32 = 0.65;

fn fan_mask() -> impl Fn(f32, f32) -> bool {
    |u, v| {
        let (dx, dy) = (u - APEX.0, v - APEX.1);
        let r = (dx * dx + dy * dy).sqrt();
        dy > 0.0 && dx.atan2(dy).abs() < FAN_HALF_ANGLE && (0.08..0.94).contains(&r)
    }
}

fn ultrasound(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let j = |r: &mut ChaCha8Rng, s: f32| r.random_range(-s..s);
    let mut c = Canvas::new(size, 1, grey(0.0));
    let fan = fan_mask();
    c.fill((0.0, 0.0, 1.0, 1.0), 1.0, grey(0.3), 1.0, |u, v| if fan(u, v) { -1.0 } else { 1.0 });
    // Depth attenuation.
    c.shade(|_, v| 1.15 - 0.45 * v);
    let (cx, cy) = (0.5 + j(&mut a, 0.03), 0.52 + j(&mut a, 0.03));
    let zone = match scene.region {
        0 => {
            // Liver: a homogeneous organ with dark vessels (portal / hepatic veins).
            c.ellipse(cx, cy, 0.4, 0.3, 0.1, 3.0, grey(0.42));
            for _ in 0..4 {
                let (x, y) = (cx + a.random_range(-0.25..0.25), cy + a.random_range(-0.18..0.18));
                let ang = a.random_range(0.0..PI);
                c.ellipse(x, y, 0.05, 0.015, ang, 1.0, grey(0.04));
            }
            Zone { cx, cy, rx: 0.28, ry: 0.2 }
        }
        1 => {
            // Kidney: bean-shaped, darker cortex, bright central sinus fat.
            c.ellipse(cx, cy, 0.32, 0.17, 0.15, 2.0, grey(0.55));
            c.ellipse(cx, cy, 0.29, 0.14, 0.15, 2.0, grey(0.22));
            c.ellipse(cx + 0.02, cy, 0.16, 0.05, 0.15, 3.0, grey(0.75));
            Zone { cx, cy, rx: 0.26, ry: 0.13 }
        }
        _ => {
            // Heart (four-chamber): dark blood pools separated by bright septa and walls.
            c.ellipse(cx, cy, 0.3, 0.36, 0.0, 2.0, grey(0.55));
            for (dx, dy, rx, ry) in
                [(-0.1, -0.1, 0.09, 0.13), (0.1, -0.1, 0.09, 0.13), (-0.1, 0.15, 0.08, 0.09), (0.1, 0.15, 0.08, 0.09)]
            {
                c.ellipse(cx + dx, cy + dy, rx, ry, 0.0, 2.0, grey(0.03));
            }
            Zone { cx, cy, rx: 0.24, ry: 0.3 }
        }
    };
    let (fx, fy, fr) = finding_place(scene, zone);
    match scene.finding {
        1 => {
            // Cyst: anechoic, with posterior acoustic enhancement below it.
            c.fill((fx - fr, fy, fx + fr, fy + 0.3), 4.0, grey(0.75), 0.5, |u, v| {
                (u - fx).abs() - fr * 0.8 + (v - fy) * 0.0
            });
            c.circle(fx, fy, fr, 1.5, grey(0.01));
        }
        2 => {
            c.circle(fx, fy, fr, 2.0, grey(0.85)); // hyperechoic solid mass
            c.circle(fx, fy, fr * 0.5, 3.0, grey(0.65));
        }
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        // Bright focus with an acoustic shadow beneath.
        c.fill((x - 0.015, y, x + 0.015, y + 0.2), 2.0, grey(0.02), 0.8, |u, _| (u - x).abs() - 0.01);
        c.circle(x, y, 0.014, 1.0, grey(1.0));
    }
    // Outside the fan stays black.
    c.fill((0.0, 0.0, 1.0, 1.0), 0.5, grey(0.0), 1.0, |u, v| if fan(u, v) { 1.0 } else { -1.0 });
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// Fundus photograph: the orange retina with optic disc, macula and vessel arcades.

fn fundus(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let j = |r: &mut ChaCha8Rng, s: f32| r.random_range(-s..s);
    let mut c = Canvas::new(size, 3, [0.0, 0.0, 0.0]);
    c.circle(0.5, 0.5, 0.47, 1.5, [0.85, 0.38, 0.16]);
    // Where the disc and macula are depends on what the photo is centred on.
    let mirror = if a.random_bool(0.5) { 1.0 } else { -1.0 };
    let (disc, macula) = match scene.region {
        0 => ((0.5, 0.5), (0.5 - mirror * 0.3, 0.52)),
        1 => ((0.5 + mirror * 0.3, 0.48), (0.5, 0.5)),
        _ => ((0.5 + mirror * 0.62, 0.5), (0.5 + mirror * 0.32, 0.52)),
    };
    let (disc, macula) = (
        (disc.0 + j(&mut a, 0.02), disc.1 + j(&mut a, 0.02)),
        (macula.0 + j(&mut a, 0.02), macula.1 + j(&mut a, 0.02)),
    );
    c.circle(macula.0, macula.1, 0.09, 8.0, [0.6, 0.22, 0.08]);
    c.circle(macula.0, macula.1, 0.025, 3.0, [0.5, 0.16, 0.06]);
    // Vessel arcades: from the disc, curving above and below the macula.
    for s in [-1.0f32, 1.0] {
        for (spread, w) in [(0.22, 0.016), (0.34, 0.011)] {
            let pts: Vec<(f32, f32)> = (0..12)
                .map(|t| {
                    let t = t as f32 / 11.0;
                    let x = disc.0 + (macula.0 - disc.0) * 1.6 * t;
                    let y = disc.1 + s * spread * (PI * t * 0.9).sin() + s * 0.02 * t;
                    (x, y)
                })
                .collect();
            c.polyline(&pts, w, [0.55, 0.1, 0.05]);
        }
        c.line(disc.0, disc.1, disc.0 - (macula.0 - disc.0) * 0.6, disc.1 + s * 0.3, 0.012, [0.55, 0.1, 0.05]);
    }
    c.circle(disc.0, disc.1, 0.075, 1.5, [1.0, 0.85, 0.55]);
    c.circle(disc.0 + 0.01, disc.1, 0.035, 2.0, [1.0, 0.95, 0.8]);
    // Vignetting at the rim of the field.
    c.shade(|u, v| {
        let r = ((u - 0.5).powi(2) + (v - 0.5).powi(2)).sqrt();
        (1.1 - 0.8 * r * r).min(1.0)
    });
    let zone = Zone { cx: 0.5, cy: 0.5, rx: 0.33, ry: 0.3 };
    let (fx, fy, fr) = finding_place(scene, zone);
    match scene.finding {
        1 => c.ellipse(fx, fy, fr, fr * 0.7, 0.5, 2.5, [0.35, 0.03, 0.02]),
        2 => {
            let mut r = stream(scene.seed, FINDING);
            for _ in 0..7 {
                let (dx, dy) = (r.random_range(-fr..fr), r.random_range(-fr..fr));
                c.circle(fx + dx, fy + dy, r.random_range(0.012..0.022), 1.5, [0.98, 0.9, 0.4]);
            }
        }
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.012, 1.0, [0.45, 0.02, 0.02]);
    }
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// OCT: a retinal B-scan: bright nerve fibre layer, dark nuclear layers, very bright RPE.

fn oct(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let mut c = Canvas::new(size, 1, grey(0.04));
    let top = 0.38 + a.random_range(-0.03..0.03f32);
    let centre = 0.5 + a.random_range(-0.05..0.05f32);
    let region = scene.region;
    // Depth of the inner retinal surface below `top` at column u.
    let dip = move |u: f32| -> f32 {
        let d = (u - centre) / 0.12;
        match region {
            0 => 0.08 * (-d * d).exp(),      // foveal pit
            1 => 0.2 * (-d * d * 0.6).exp(), // deep optic cup
            _ => 0.0,
        }
    };
    let thickness = if region == 2 { 0.16 } else { 0.22 };
    // Layers as (offset from the surface as a fraction of thickness, grey level), inner to outer.
    let layers =
        [(0.0, 0.85), (0.12, 0.45), (0.3, 0.22), (0.42, 0.5), (0.52, 0.18), (0.8, 0.8), (0.88, 0.35), (0.92, 0.98)];
    let n = size as f32;
    for x in 0..size {
        let u = (x as f32 + 0.5) / n;
        let surf = top + dip(u);
        let bottom = top + thickness;
        let nerve_head = region == 1 && ((u - centre) / 0.12).abs() < 0.7;
        for y in 0..size {
            let v = (y as f32 + 0.5) / n;
            let val = if v < surf {
                0.04
            } else if v > bottom + 0.035 {
                0.4 * (1.0 - (v - bottom - 0.035) * 2.5).max(0.1) // choroid fading with depth
            } else if nerve_head {
                0.3
            } else {
                let t = (v - surf) / (bottom - surf).max(1e-3);
                let mut g = 0.98;
                for &(off, level) in &layers {
                    if t >= off {
                        g = level;
                    }
                }
                if v > bottom {
                    0.98
                } else {
                    g
                }
            };
            c.data[y * size + x] = val;
        }
    }
    let zone = Zone { cx: 0.5, cy: top + thickness * 0.45, rx: 0.36, ry: thickness * 0.22 };
    let (fx, _fy, fr) = finding_place(scene, zone);
    match scene.finding {
        1 => {
            // Cystoid spaces of fluid within the inner layers.
            let mut r = stream(scene.seed, FINDING);
            for k in 0..3 {
                let x = fx + (k as f32 - 1.0) * fr * 0.9;
                c.ellipse(x, zone.cy + r.random_range(-0.01..0.01), fr * 0.45, thickness * 0.18, 0.0, 1.5, grey(0.03));
            }
        }
        2 => {
            // Drusen: domes lifting the RPE, filled with moderately reflective material.
            let base = top + thickness;
            c.ellipse(fx, base + 0.01, fr * 0.9, 0.05, 0.0, 1.5, grey(0.98));
            c.ellipse(fx, base + 0.018, fr * 0.7, 0.035, 0.0, 1.5, grey(0.55));
        }
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.011, 1.0, grey(1.0));
    }
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// Dermoscopy: magnified skin with one pigmented or vascular lesion in the middle.

fn dermoscopy(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let skin = [0.9 + a.random_range(-0.04..0.04f32), 0.68, 0.58];
    let mut c = Canvas::new(size, 3, skin);
    match scene.region {
        0 => {
            // Trunk: a faint network of skin lines.
            for _ in 0..10 {
                let (x, y) = (a.random_range(0.0..1.0f32), a.random_range(0.0..1.0f32));
                let ang = a.random_range(0.0..PI);
                c.line(x, y, x + 0.3 * ang.cos(), y + 0.3 * ang.sin(), 0.012, [0.7, 0.48, 0.4]);
            }
        }
        1 => {
            // Face: many follicular openings, pale rings with a darker centre.
            for _ in 0..40 {
                let (x, y) = (a.random_range(0.0..1.0f32), a.random_range(0.0..1.0f32));
                c.circle(x, y, 0.022, 1.0, [0.98, 0.88, 0.82]);
                c.circle(x, y, 0.01, 1.0, [0.66, 0.46, 0.38]);
            }
        }
        _ => {
            // Palm or sole: parallel ridges and furrows.
            let ang = a.random_range(-0.4..0.4f32);
            let (s, co) = ang.sin_cos();
            c.fill((0.0, 0.0, 1.0, 1.0), 2.0, [0.78, 0.56, 0.48], 0.8, |u, v| {
                let t = u * co + v * s;
                ((t * 28.0 * PI).sin() - 0.4) * -0.01
            });
        }
    }
    let zone = Zone { cx: 0.5, cy: 0.5, rx: 0.38, ry: 0.38 };
    let (fx, fy, fr) = finding_place(scene, zone);
    let r = fr * 2.6;
    let mut f = stream(scene.seed, FINDING);
    match scene.finding {
        0 => {
            // Benign nevus: round, symmetric, evenly brown.
            c.circle(fx, fy, r, 3.0, [0.55, 0.35, 0.22]);
            c.circle(fx, fy, r * 0.7, 4.0, [0.45, 0.28, 0.17]);
        }
        1 => {
            // Melanoma: asymmetric, several colours, blue-grey veil.
            for _ in 0..5 {
                let (dx, dy) = (f.random_range(-r * 0.6..r * 0.6), f.random_range(-r * 0.6..r * 0.6));
                c.ellipse(
                    fx + dx,
                    fy + dy,
                    r * f.random_range(0.4..0.7),
                    r * f.random_range(0.3..0.6),
                    f.random_range(0.0..PI),
                    2.0,
                    [0.3, 0.17, 0.1],
                );
            }
            c.ellipse(fx + r * 0.2, fy - r * 0.1, r * 0.35, r * 0.25, 0.6, 3.0, [0.38, 0.42, 0.55]);
            c.ellipse(fx - r * 0.3, fy + r * 0.2, r * 0.25, r * 0.2, 0.1, 2.0, [0.12, 0.06, 0.05]);
        }
        _ => {
            // Vascular lesion: red-purple lacunae.
            for _ in 0..8 {
                let (dx, dy) = (f.random_range(-r * 0.6..r * 0.6), f.random_range(-r * 0.6..r * 0.6));
                c.circle(fx + dx, fy + dy, r * f.random_range(0.18..0.3), 2.0, [0.62, 0.1, 0.25]);
            }
        }
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.014, 1.0, [0.12, 0.07, 0.05]);
    }
    (c, zone)
}

// ---------------------------------------------------------------------------------------------
// Microscopy: an H&E-stained field; pink eosin background, purple haematoxylin nuclei.

fn microscopy(scene: &Scene, size: usize) -> (Canvas, Zone) {
    let mut a = stream(scene.seed, ANATOMY);
    let mut cells = stream(scene.seed, CELLS);
    let mut c = Canvas::new(size, 3, [0.96, 0.8, 0.88]);
    let (lo, hi) = DENSITY_COUNTS[scene.attribute];
    let n = cells.random_range(lo..=hi);
    // Cell centres spread over the field without heavy overlap.
    let mut centres: Vec<(f32, f32)> = Vec::new();
    let min_gap = 0.055;
    let mut tries = 0;
    while centres.len() < n && tries < 20000 {
        tries += 1;
        let (x, y) = (cells.random_range(0.06..0.94f32), cells.random_range(0.06..0.94f32));
        if centres.iter().all(|&(p, q)| ((x - p).powi(2) + (y - q).powi(2)).sqrt() > min_gap) {
            centres.push((x, y));
        }
    }
    match scene.region {
        0 => {
            // Blood smear: red cells with pale centres.
            for &(x, y) in &centres {
                c.circle(x, y, 0.03, 1.0, [0.86, 0.38, 0.44]);
                c.circle(x, y, 0.012, 2.0, [0.93, 0.62, 0.66]);
            }
        }
        1 => {
            // Colon: glands (white lumens lined by pink cytoplasm), nuclei around them.
            for _ in 0..3 {
                let (x, y) = (a.random_range(0.2..0.8f32), a.random_range(0.2..0.8f32));
                c.circle(x, y, 0.13, 2.0, [0.88, 0.55, 0.72]);
                c.circle(x, y, 0.06, 1.5, [0.99, 0.97, 0.98]);
            }
            for &(x, y) in &centres {
                c.ellipse(x, y, 0.018, 0.012, a.random_range(0.0..PI), 1.0, [0.42, 0.25, 0.6]);
            }
        }
        _ => {
            // Lymph node: sheets of small round dark lymphocytes.
            for &(x, y) in &centres {
                c.circle(x, y, 0.02, 1.0, [0.35, 0.2, 0.55]);
            }
        }
    }
    let zone = Zone { cx: 0.5, cy: 0.5, rx: 0.4, ry: 0.4 };
    let (fx, fy, fr) = finding_place(scene, zone);
    let mut f = stream(scene.seed, FINDING);
    match scene.finding {
        1 => {
            // Tumour cells: a cluster of large, irregular, hyperchromatic nuclei.
            for _ in 0..6 {
                let (dx, dy) = (f.random_range(-fr..fr), f.random_range(-fr..fr));
                c.ellipse(fx + dx, fy + dy, 0.035, 0.025, f.random_range(0.0..PI), 1.0, [0.25, 0.08, 0.35]);
            }
        }
        2 => {
            // Parasites: small blue rings with a dot (ring forms).
            for _ in 0..5 {
                let (dx, dy) = (f.random_range(-fr * 1.5..fr * 1.5), f.random_range(-fr * 1.5..fr * 1.5));
                c.ring(fx + dx, fy + dy, 0.016, 0.016, 0.006, [0.2, 0.2, 0.6]);
                c.circle(fx + dx + 0.012, fy + dy, 0.005, 1.0, [0.2, 0.1, 0.4]);
            }
        }
        _ => {}
    }
    for (x, y) in spot_places(scene, zone) {
        c.circle(x, y, 0.012, 1.0, [0.08, 0.0, 0.12]);
    }
    (c, zone)
}
