#!/bin/bash
# Seed corpora for the fuzz targets from files already in the repository (small ones: libFuzzer
# mutates them; large seeds slow every run). Writes fuzz/corpus/<target>/ (ignored by git).
set -e
cd "$(dirname "$0")/.."
c=fuzz/corpus
mkdir -p $c/image_decode $c/dicom_decode $c/chat_request $c/chat_template $c/record_readers $c/jpeg_extended
find crates/vlm/tests/fixtures/convert_rgb crates/vlm/tests/fixtures/qwen2vl-tiny/images -type f \
  \( -name '*.png' -o -name '*.jpg' -o -name '*.bmp' \) -size -64k -exec cp {} $c/image_decode/ \;
cp samples/real/Images/RealSamples/ct_abdomen_small.png $c/image_decode/
find crates/data/tests/fixtures/dicom crates/data/tests/fixtures/dicom-codecs crates/data/tests/fixtures/dicom-htj2k \
  -name '*.dcm' -size -64k -exec cp {} $c/dicom_decode/ \;
# The 12-bit JPEG Extended streams inside the DICOM fixtures (SOI to EOI), and 8-bit JPEGs.
for f in crates/data/tests/fixtures/dicom/JPEG-lossy.dcm crates/data/tests/fixtures/dicom-codecs/JPGExtended.dcm; do
  python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); s = b.find(b"\xff\xd8\xff"); e = b.rfind(b"\xff\xd9"); open(sys.argv[2], "wb").write(b[s:e + 2])' \
    "$f" "$c/jpeg_extended/$(basename "$f" .dcm).jpg"
done
find crates/vlm/tests/fixtures -name '*.jpg' -size -64k -exec cp {} $c/jpeg_extended/ \;
echo '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0.5,"stop":["x"]}' > $c/chat_request/text.json
echo '{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"q"},{"type":"image_url","image_url":{"url":"data:image/png;base64,'"$(base64 -w0 crates/vlm/tests/fixtures/qwen2vl-tiny/images/tiny.png)"'"}}]}],"n":2,"stream":true}' > $c/chat_request/image.json
echo '[{"role":"system","content":"You are a doctor."},{"role":"user","content":[{"type":"image"},{"type":"text","text":"Which organ?"}]},{"role":"assistant","content":"A"}]' > $c/chat_template/conv.json
echo '[{"role":"user","content":"plain text"}]' > $c/chat_template/text.json
find crates/data/tests/fixtures/medr1-splits crates/data/tests/fixtures/omnimedvqa-bad samples/real/QA_information \
  -name '*.json' -size -64k -exec sh -c 'cp "$1" "'$c'/record_readers/$(echo "$1" | tr / _)"' _ {} \;
ls $c/* | head -50
