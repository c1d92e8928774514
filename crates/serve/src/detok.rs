//! Incremental detokenisation: each new token costs the decoding of a few tokens, not of the whole
//! sequence. The tokenizer's stream decoder (`tokenizers::step_decode_stream`, the state kept
//! here so it needs no borrow of the tokenizer) decodes a short window of ids around the last
//! emitted text and yields only what is new, holding back a multi-byte UTF-8 character until
//! its last byte has arrived. Should it ever report an inconsistent prefix, the text is taken
//! from a full decode instead, so what is sent stays a prefix of the final text.

use tokenizers::Tokenizer;

/// The decoded text of one sequence, grown token by token.
#[derive(Debug, Default, Clone)]
pub struct IncrementalText {
    /// Every token so far (for the usage count and the fallback).
    tokens: Vec<u32>,
    /// The stream decoder's window, previous text and its index.
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
    /// All text decoded so far.
    text: String,
}

impl IncrementalText {
    /// Adds one token; returns the text decoded so far (special tokens skipped).
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> &str {
        self.tokens.push(token);
        let step = tokenizers::step_decode_stream(
            &**tokenizer,
            vec![token],
            true,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        );
        match step {
            Ok(Some(piece)) => self.text.push_str(&piece),
            Ok(None) => {}
            Err(_) => {
                // Re-synchronise from the whole sequence (never expected for byte-level BPE).
                self.text = tokenizer.decode(&self.tokens, true).unwrap_or_default();
                self.text = self.text.trim_end_matches('\u{FFFD}').to_string();
                self.ids.clear();
                self.prefix.clear();
                self.prefix_index = 0;
            }
        }
        &self.text
    }

    /// The sequence is over: text the stream decoder still holds back (bytes that never formed
    /// a character, decoded as U+FFFD) is added as the full decode has it.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> &str {
        if let Ok(full) = tokenizer.decode(&self.tokens, true) {
            if full.len() > self.text.len() && full.starts_with(&self.text) {
                self.text = full;
            }
        }
        &self.text
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> Tokenizer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen2vl-tiny/model");
        Tokenizer::from_file(dir.join("tokenizer.json")).unwrap()
    }

    /// Token by token, the text grows only by whole characters and always equals the full decode
    /// of the tokens so far once a character is complete — across multi-byte UTF-8 characters
    /// split over several byte-level tokens (the tiny 564-token vocabulary splits every one).
    #[test]
    fn streamed_text_equals_the_full_decode_across_multibyte_pieces() {
        let tok = tiny_tokenizer();
        let text = "Ödem im Lungenflügel – 肺 😀 <answer>C</answer>";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert!(ids.len() > text.chars().count() / 2, "expected byte-level pieces: {} ids", ids.len());
        let mut inc = IncrementalText::default();
        let mut split_chars = 0;
        for (i, &id) in ids.iter().enumerate() {
            let streamed = inc.push(&tok, id).to_string();
            let full = tok.decode(&ids[..=i], true).unwrap();
            assert!(!streamed.contains('\u{FFFD}'), "a partial character was emitted: {streamed:?}");
            assert!(full.starts_with(&streamed), "{streamed:?} is not a prefix of {full:?}");
            if full.ends_with('\u{FFFD}') {
                split_chars += 1;
            } else {
                assert_eq!(streamed, full, "after token {i}");
            }
        }
        assert!(split_chars > 0, "the test text should split a character across tokens");
        assert_eq!(inc.text(), text);
        assert_eq!(inc.finish(&tok), text);
        // A sequence that ends inside a character keeps the replacement character at the end.
        let cut = ids.iter().position(|&id| tok.decode(&[id], true).unwrap().contains('\u{FFFD}')).unwrap();
        let mut partial = IncrementalText::default();
        for &id in &ids[..=cut] {
            partial.push(&tok, id);
        }
        assert_eq!(partial.finish(&tok), tok.decode(&ids[..=cut], true).unwrap());
        assert_eq!(inc.tokens(), ids.len());
    }
}
