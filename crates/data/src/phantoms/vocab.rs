//! What the phantom questions can ask about each modality, and how they ask it.

use crate::taxonomy::Modality;

/// The words of one modality's phantoms.
pub struct Vocab {
    /// Anatomy Identification answers: the body region / structure / tissue shown.
    pub regions: [&'static str; 3],
    pub region_question: &'static str,
    /// Disease Diagnosis answers; the first is the finding-free one.
    pub findings: [&'static str; 3],
    pub finding_question: &'static str,
    /// The small lesions Lesion Grading counts (and Other Biological Attributes locates).
    pub spots: &'static str,
}

/// Lesion Grading: the number of small lesions. Mild 1-2, Moderate 3-5, Severe 6-9.
pub const GRADES: [&str; 3] = ["Mild", "Moderate", "Severe"];
pub const GRADE_COUNTS: [(usize, usize); 3] = [(1, 2), (3, 5), (6, 9)];

/// Other Biological Attributes (all but microscopy): where the small lesions lie.
pub const SIDES: [&str; 3] = ["Left side", "Right side", "Both sides"];
/// Other Biological Attributes (microscopy): how many cells the field holds.
pub const DENSITIES: [&str; 3] = ["Fewer than 20", "20 to 40", "More than 40"];
pub const DENSITY_COUNTS: [(usize, usize); 3] = [(8, 15), (24, 34), (46, 60)];

/// How modality options are written.
pub fn modality_label(m: Modality) -> &'static str {
    match m {
        Modality::Ct => "CT",
        Modality::Mri => "MRI",
        Modality::XRay => "X-ray",
        Modality::Ultrasound => "Ultrasound",
        Modality::Dermoscopy => "Dermoscopy",
        Modality::Fundus => "Fundus photography",
        Modality::Oct => "OCT",
        Modality::Microscopy => "Microscopy",
    }
}

pub const MODALITY_QUESTIONS: [&str; 3] = [
    "What imaging modality was used to acquire this image?",
    "Which imaging technique produced this image?",
    "What type of medical image is this?",
];

pub fn vocab(m: Modality) -> Vocab {
    match m {
        Modality::Ct => Vocab {
            regions: ["Head", "Chest", "Abdomen"],
            region_question: "Which body region is shown in this CT image?",
            findings: ["No abnormality", "Tumor", "Cyst"],
            finding_question: "What abnormality is seen in this CT image?",
            spots: "calcifications",
        },
        Modality::Mri => Vocab {
            regions: ["Brain", "Knee", "Spine"],
            region_question: "Which body part is imaged in this MRI scan?",
            findings: ["No abnormality", "Tumor", "Hemorrhage"],
            finding_question: "What abnormality is seen in this MRI scan?",
            spots: "hyperintense foci",
        },
        Modality::XRay => Vocab {
            regions: ["Chest", "Hand", "Pelvis"],
            region_question: "Which body part is shown in this radiograph?",
            findings: ["No abnormality", "Mass", "Fracture"],
            finding_question: "What abnormality is visible in this X-ray?",
            spots: "nodules",
        },
        Modality::Ultrasound => Vocab {
            regions: ["Liver", "Kidney", "Heart"],
            region_question: "Which organ is shown in this ultrasound image?",
            findings: ["No abnormality", "Cyst", "Solid mass"],
            finding_question: "What lesion is seen in this ultrasound image?",
            spots: "echogenic foci",
        },
        Modality::Fundus => Vocab {
            regions: ["Optic disc", "Macula", "Peripheral retina"],
            region_question: "Which part of the retina is at the centre of this fundus photograph?",
            findings: ["No abnormality", "Hemorrhage", "Hard exudates"],
            finding_question: "What abnormality is present in this fundus photograph?",
            spots: "microaneurysms",
        },
        Modality::Oct => Vocab {
            regions: ["Fovea", "Optic nerve head", "Peripheral retina"],
            region_question: "Which part of the retina does this OCT scan cross?",
            findings: ["No abnormality", "Macular edema", "Drusen"],
            finding_question: "What abnormality is seen in this OCT scan?",
            spots: "hyperreflective foci",
        },
        Modality::Dermoscopy => Vocab {
            regions: ["Trunk", "Face", "Palm or sole"],
            region_question: "On which body site was this dermoscopy image taken?",
            findings: ["Benign nevus", "Melanoma", "Vascular lesion"],
            finding_question: "What is the most likely diagnosis of this skin lesion?",
            spots: "dark dots",
        },
        Modality::Microscopy => Vocab {
            regions: ["Blood", "Colon", "Lymph node"],
            region_question: "What tissue is shown in this micrograph?",
            findings: ["No abnormality", "Tumor cells", "Parasites"],
            finding_question: "What abnormality is present in this micrograph?",
            spots: "mitotic figures",
        },
    }
}
