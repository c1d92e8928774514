//! Log-probabilities in OpenAI's response format: `choices[i].logprobs.content[j] = {token,
//! logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`. A token's `bytes` are its exact
//! bytes (a byte-level BPE token can be part of a UTF-8 character); `token` is them as text, with
//! U+FFFD where they are not whole characters, as OpenAI and vLLM give them.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::OnceLock;
use tokenizers::Tokenizer;

/// One sampled token, with what was asked about it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOut {
    pub id: u32,
    pub logprob: f32,
    /// The most likely tokens at this step (OpenAI's `top_logprobs`), most likely first.
    pub top: Vec<(u32, f32)>,
}

/// GPT-2's byte-level alphabet, reversed: the character a vocabulary entry uses for each byte.
fn byte_decoder() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        bs.iter().zip(&cs).map(|(&b, &c)| (char::from_u32(c).unwrap(), b as u8)).collect()
    })
}

/// The token's bytes: its vocabulary entry through the byte-level alphabet (special tokens such
/// as `<|im_end|>` are plain ASCII there and map to themselves).
pub fn token_bytes(tokenizer: &Tokenizer, id: u32) -> Vec<u8> {
    let Some(piece) = tokenizer.id_to_token(id) else { return Vec::new() };
    let table = byte_decoder();
    let mut out = Vec::with_capacity(piece.len());
    for c in piece.chars() {
        match table.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

fn entry(tokenizer: &Tokenizer, id: u32, logprob: f32) -> Value {
    let bytes = token_bytes(tokenizer, id);
    json!({"token": String::from_utf8_lossy(&bytes), "logprob": logprob, "bytes": bytes})
}

/// The `content` list for these tokens; `top` entries only when `top_logprobs` > 0 was asked.
pub fn content(tokenizer: &Tokenizer, tokens: &[TokenOut]) -> Value {
    Value::Array(
        tokens
            .iter()
            .map(|t| {
                let mut e = entry(tokenizer, t.id, t.logprob);
                e["top_logprobs"] = Value::Array(t.top.iter().map(|&(id, lp)| entry(tokenizer, id, lp)).collect());
                e
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let t = byte_decoder();
        assert_eq!(t.len(), 256);
        assert_eq!((t[&'!'], t[&'~'], t[&'Ġ'], t[&'Ċ'], t[&'Ā']), (b'!', b'~', b' ', b'\n', 0));
    }
}
