#!/usr/bin/env bash
# Smoke test of the multi-task tagging demo on a small slice of its data (seconds):
#
#   bash tools/tag_smoke.sh MTLM_TAG CONLL_DIR SST2_DIR
#
# MTLM_TAG is the built binary (e.g. build/release/examples/mtlm-tag); CONLL_DIR holds CoNLL-2003's
# train.txt, dev.txt, test.txt and SST2_DIR SST-2's train.tsv, dev.tsv (CI passes the small
# fixtures in tests/fixtures/tagging, which have the same layout). The slice (the first 300
# blocks of each CoNLL file, the first 500 rows of each SST-2 file) goes to a temporary folder,
# never into the repository. Steps: train one epoch on all four tasks, eval --json, predict one
# sentence, train and eval a task subset (--tasks ner) and an ensemble of two with BIOES CRFs
# (whose predictions must come back in BIO), and check that malformed input (a CoNLL line with 3
# fields, an SST-2 label that is not 0/1, an unknown tag scheme) fails with a clear message and a
# non-zero exit.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 MTLM_TAG CONLL_DIR SST2_DIR" >&2
  exit 2
fi
tag=$(realpath "$1")
conll=$2
sst2=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "tag_smoke: FAILED: $*" >&2; exit 1; }

mkdir -p "$work/conll" "$work/sst2"
for split in train dev test; do
  awk -v RS= -v ORS='\n\n' 'NR <= 300' "$conll/$split.txt" >"$work/conll/$split.txt"
done
for split in train dev; do head -n 501 "$sst2/$split.tsv" >"$work/sst2/$split.tsv"; done
# Sentences of the test slice: blocks that are not -DOCSTART- lines.
test_sentences=$(awk -v RS= '!/^-DOCSTART-/ { n++ } END { print n }' "$work/conll/test.txt")

echo "== train (1 epoch, all tasks)"
"$tag" train --conll "$work/conll" --sst2 "$work/sst2" --out "$work/m" --epochs 1 --threads 1 --seed 1
[ -s "$work/m" ] || fail "no model written"

echo "== eval --json"
"$tag" eval --model "$work/m" --conll "$work/conll" --sst2 "$work/sst2" --json | tee "$work/eval.json"
fraction='(0(\.[0-9]+)?|1(\.0+)?)'
for key in pos_accuracy chunk_f1 ner_f1 sentiment_accuracy; do
  grep -Eq "\"$key\": $fraction[,}]" "$work/eval.json" || fail "eval: no fraction for $key"
done
grep -q '"sentiment_split": "dev"' "$work/eval.json" || fail "eval: sentiment split is not dev"
grep -q '"conll_split": "test"' "$work/eval.json" || fail "eval: CoNLL split is not test"
grep -q "\"conll_sentences\": $test_sentences," "$work/eval.json" || fail "eval: expected $test_sentences CoNLL sentences"
sst_rows=$(($(wc -l <"$work/sst2/dev.tsv") - 1))
grep -q "\"sentiment_sentences\": $sst_rows}" "$work/eval.json" || fail "eval: expected $sst_rows SST-2 sentences"
"$tag" eval --model "$work/m" --conll "$work/conll" --sst2 "$work/sst2" --split dev | grep -q "CoNLL dev" ||
  fail "eval --split dev"

echo "== predict"
printf 'EU rejects German call to boycott British lamb .\n\n' |
  "$tag" predict --model "$work/m" | tee "$work/predict.json"
[ "$(wc -l <"$work/predict.json")" -eq 2 ] || fail "predict: expected one line per input line"
first=$(head -n 1 "$work/predict.json")
grep -q '"tokens": \["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."\]' <<<"$first" ||
  fail "predict: tokens"
for key in pos chunk ner; do
  list=$(sed -n "s/.*\"$key\": \[\([^]]*\)\].*/\1/p" <<<"$first")
  [ "$(grep -o '", "' <<<"$list" | wc -l)" -eq 8 ] || fail "predict: expected 9 $key tags, got [$list]"
done
grep -Eq '"sentiment": "(positive|negative)"}$' <<<"$first" || fail "predict: sentiment"
grep -q '"tokens": \[\], "pos": \[\]' "$work/predict.json" || fail "predict: empty line"

echo "== task subset (--tasks ner, no SST-2 needed)"
"$tag" train --conll "$work/conll" --out "$work/ner" --epochs 1 --threads 1 --tasks ner 2>"$work/ner.log" ||
  { cat "$work/ner.log"; fail "train --tasks ner"; }
"$tag" eval --model "$work/ner" --conll "$work/conll" --json | tee "$work/ner.json"
grep -Eq "\"ner_f1\": $fraction," "$work/ner.json" || fail "subset: no ner_f1"
grep -q '"pos_accuracy": null, "chunk_f1": null' "$work/ner.json" || fail "subset: untrained tasks not null"
grep -q '"sentiment_accuracy": null' "$work/ner.json" || fail "subset: sentiment not null"

echo "== ensemble of two (trained side by side, BIOES CRFs), eval and predict"
"$tag" train --conll "$work/conll" --sst2 "$work/sst2" --out "$work/ens" --epochs 1 --threads 2 --ensemble 2 \
  --tag-scheme bioes 2>"$work/ens.log" || { cat "$work/ens.log"; fail "train --ensemble 2 --tag-scheme bioes"; }
grep -q "ensemble of 2 on dev" "$work/ens.log" || fail "ensemble: no dev scores of the ensemble"
"$tag" eval --model "$work/ens" --conll "$work/conll" --sst2 "$work/sst2" --json | tee "$work/ens.json"
for key in pos_accuracy chunk_f1 ner_f1 sentiment_accuracy; do
  grep -Eq "\"$key\": $fraction[,}]" "$work/ens.json" || fail "ensemble eval: no fraction for $key"
done
printf 'EU rejects German call to boycott British lamb .\n' | "$tag" predict --model "$work/ens" >"$work/ens.pred"
grep -q '"ner": \["' "$work/ens.pred" || fail "ensemble predict: no NER tags"
! grep -q '"[ES]-' "$work/ens.pred" || fail "ensemble predict: BIOES tags in the output, expected BIO"

echo "== malformed input"
mkdir -p "$work/bad"
cp "$work/conll/dev.txt" "$work/conll/test.txt" "$work/bad/"
awk 'NR == 5 { print "Brussels NNP B-NP"; next } { print }' "$work/conll/train.txt" >"$work/bad/train.txt"
if "$tag" train --conll "$work/bad" --sst2 "$work/sst2" --out "$work/bad.m" --epochs 1 2>"$work/err"; then
  fail "a CoNLL line with 3 fields was accepted"
fi
cat "$work/err"
grep -q "bad/train.txt:5: 3 fields, expected 4" "$work/err" || fail "CoNLL error does not name file:line"
[ ! -e "$work/bad.m" ] || fail "a model was written from bad input"
mkdir -p "$work/badsst"
cp "$work/sst2/dev.tsv" "$work/badsst/"
awk -F'\t' -v OFS='\t' 'NR == 3 { $2 = "2" } { print }' "$work/sst2/train.tsv" >"$work/badsst/train.tsv"
if "$tag" train --conll "$work/conll" --sst2 "$work/badsst" --out "$work/bad.m" --epochs 1 2>"$work/err"; then
  fail "an SST-2 label 2 was accepted"
fi
cat "$work/err"
grep -q "badsst/train.tsv:3: label \"2\", expected 0 or 1" "$work/err" || fail "SST-2 error does not name file:line"
if "$tag" train --conll "$work/conll" --sst2 "$work/sst2" --out "$work/bad.m" --tag-scheme iob1 2>"$work/err"; then
  fail "an unknown tag scheme was accepted"
fi
grep -q 'tag-scheme expects bio or bioes, got "iob1"' "$work/err" || fail "tag scheme error"
if "$tag" eval --model "$work/eval.json" --conll "$work/conll" 2>"$work/err"; then fail "a non-model file was accepted"; fi
grep -q "eval.json" "$work/err" || fail "a bad model file is not named"

echo "== tag_smoke passed"
