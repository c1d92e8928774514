//! Qwen2-VL's chat template (the bundled tiny checkpoint's, the same as the released one for
//! text and images) rendered over any conversation JSON: a prompt or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(messages) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let template: serde_json::Value =
        serde_json::from_str(vlm::shapes::TINY_FILES[3].1).expect("bundled chat_template.json");
    let template = template["chat_template"].as_str().expect("chat_template");
    let _ = vlm::prompt::render_chat_template(template, &messages, true);
});
