//! The 8 imaging modalities and 5 question types of OmniMedVQA / Med-R1, with their canonical
//! names and the many spellings the released data uses for them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An imaging modality. Canonical names are the paper's (`CT`, `MRI`, `X-ray`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Modality {
    #[serde(rename = "CT")]
    Ct,
    #[serde(rename = "MRI")]
    Mri,
    #[serde(rename = "X-ray")]
    XRay,
    Ultrasound,
    Dermoscopy,
    Fundus,
    #[serde(rename = "OCT")]
    Oct,
    Microscopy,
}

/// A question type. Canonical names are OmniMedVQA's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuestionType {
    #[serde(rename = "Modality Recognition")]
    ModalityRecognition,
    #[serde(rename = "Anatomy Identification")]
    AnatomyIdentification,
    #[serde(rename = "Disease Diagnosis")]
    DiseaseDiagnosis,
    #[serde(rename = "Lesion Grading")]
    LesionGrading,
    #[serde(rename = "Other Biological Attributes")]
    OtherBiologicalAttributes,
}

/// Lower-case letters and digits only: "MR (Mag-netic Resonance Imaging)" -> "mrmagneticresonanceimaging".
fn squash(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

impl Modality {
    pub const ALL: [Modality; 8] = [
        Modality::Ct,
        Modality::Mri,
        Modality::XRay,
        Modality::Ultrasound,
        Modality::Dermoscopy,
        Modality::Fundus,
        Modality::Oct,
        Modality::Microscopy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Modality::Ct => "CT",
            Modality::Mri => "MRI",
            Modality::XRay => "X-ray",
            Modality::Ultrasound => "Ultrasound",
            Modality::Dermoscopy => "Dermoscopy",
            Modality::Fundus => "Fundus",
            Modality::Oct => "OCT",
            Modality::Microscopy => "Microscopy",
        }
    }

    /// The file-name stem Med-R1's released splits use (`X-Ray_test.json`, `ultrasound_test.json`).
    pub fn medr1_stem(self) -> &'static str {
        match self {
            Modality::XRay => "X-Ray",
            Modality::Ultrasound => "ultrasound",
            m => m.name(),
        }
    }

    /// What OmniMedVQA writes in `modality_type`; the phantom generator writes these so the
    /// native reader is exercised on the real spellings.
    pub fn omnimedvqa_name(self) -> &'static str {
        match self {
            Modality::Ct => "CT(Computed Tomography)",
            Modality::Mri => "MR (Mag-netic Resonance Imaging)",
            Modality::XRay => "X-Ray",
            Modality::Ultrasound => "Ultrasound",
            Modality::Dermoscopy => "Dermoscopy",
            Modality::Fundus => "Fundus Photography",
            Modality::Oct => "OCT (Optical Coherence Tomography",
            Modality::Microscopy => "Microscopy Images",
        }
    }

    /// Accepts canonical names, OmniMedVQA's spellings (including its typos), Med-R1's file stems
    /// and common synonyms; case, spaces and punctuation are ignored.
    pub fn parse(s: &str) -> Option<Modality> {
        let k = squash(s);
        let m = if k.starts_with("oct") || k.contains("opticalcoherence") {
            Modality::Oct
        } else if k.starts_with("ct") || k.contains("computedtomography") {
            Modality::Ct
        } else if k.starts_with("mr") || k.contains("magneticresonance") {
            Modality::Mri
        } else if k.starts_with("xray") || k.contains("radiograph") || k == "cr" || k == "dx" {
            Modality::XRay
        } else if k.starts_with("ultraso") || k == "us" || k.contains("sonograph") {
            Modality::Ultrasound
        } else if k.starts_with("dermo") || k.starts_with("dermato") {
            Modality::Dermoscopy
        } else if k.starts_with("fundus") || k.contains("retinalphoto") {
            Modality::Fundus
        } else if k.starts_with("microscop") || k.contains("histopatholog") || k == "pathology" {
            Modality::Microscopy
        } else {
            return None;
        };
        Some(m)
    }
}

impl QuestionType {
    pub const ALL: [QuestionType; 5] = [
        QuestionType::ModalityRecognition,
        QuestionType::AnatomyIdentification,
        QuestionType::DiseaseDiagnosis,
        QuestionType::LesionGrading,
        QuestionType::OtherBiologicalAttributes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuestionType::ModalityRecognition => "Modality Recognition",
            QuestionType::AnatomyIdentification => "Anatomy Identification",
            QuestionType::DiseaseDiagnosis => "Disease Diagnosis",
            QuestionType::LesionGrading => "Lesion Grading",
            QuestionType::OtherBiologicalAttributes => "Other Biological Attributes",
        }
    }

    /// Short code for command lines: mr, ai, dd, lg, oba.
    pub fn code(self) -> &'static str {
        match self {
            QuestionType::ModalityRecognition => "mr",
            QuestionType::AnatomyIdentification => "ai",
            QuestionType::DiseaseDiagnosis => "dd",
            QuestionType::LesionGrading => "lg",
            QuestionType::OtherBiologicalAttributes => "oba",
        }
    }

    /// Med-R1's split files are named by the canonical name (`Lesion Grading_test.json`).
    pub fn medr1_stem(self) -> &'static str {
        self.name()
    }

    pub fn parse(s: &str) -> Option<QuestionType> {
        let k = squash(s);
        let q = if k.starts_with("modality") {
            QuestionType::ModalityRecognition
        } else if k.starts_with("anatomy") {
            QuestionType::AnatomyIdentification
        } else if k.starts_with("disease") {
            QuestionType::DiseaseDiagnosis
        } else if k.starts_with("lesion") {
            QuestionType::LesionGrading
        } else if k.starts_with("other") || k.contains("biologicalattribute") {
            QuestionType::OtherBiologicalAttributes
        } else {
            return None;
        };
        Some(q)
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for QuestionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omnimedvqa_spellings_map_to_canonical_names() {
        let cases = [
            ("CT(Computed Tomography)", Modality::Ct),
            ("MR (Mag-netic Resonance Imaging)", Modality::Mri),
            ("OCT (Optical Coherence Tomography", Modality::Oct),
            ("X-Ray", Modality::XRay),
            ("ultrasound", Modality::Ultrasound),
            ("Fundus Photography", Modality::Fundus),
            ("Microscopy Images", Modality::Microscopy),
            ("Dermoscopy", Modality::Dermoscopy),
            ("MRI", Modality::Mri),
        ];
        for (s, m) in cases {
            assert_eq!(Modality::parse(s), Some(m), "{s}");
        }
        assert_eq!(Modality::parse("PET"), None);
        assert_eq!(Modality::parse(""), None);
        for m in Modality::ALL {
            assert_eq!(Modality::parse(m.name()), Some(m));
            assert_eq!(Modality::parse(m.medr1_stem()), Some(m));
            assert_eq!(Modality::parse(m.omnimedvqa_name()), Some(m));
        }
        for q in QuestionType::ALL {
            assert_eq!(QuestionType::parse(q.name()), Some(q));
            assert_eq!(QuestionType::parse(&q.name().to_lowercase()), Some(q));
        }
        assert_eq!(QuestionType::parse("Counting"), None);
    }
}
