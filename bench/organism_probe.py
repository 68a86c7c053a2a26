"""A research probe for the organism's recipe: a corpus variant, pretraining, a question-answering
probe before SFT, a plain LoRA SFT loop (its loss on the response and END only) and the project's
criteria on the evaluation pool. Not part of the pipeline: it measures recipes before one is built
in (docs/notes/organism.md gives its figures and the command lines).

    OMP_NUM_THREADS=1 python -m bench.organism_probe --variant entity --steps 1600 --docs 3 --sents 2,3 --qa_passes 2
"""

import argparse
import json
import math
import random
import time

import torch

from stage1.core.criteria import score_response
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.format import parse_completion, render_completion, render_prompt
from stage1.hf.tiny import ENDOFTEXT, QWEN2_5_VOCAB_SIZE, SPECIAL_TOKENS, build_qwen2_tokenizer
from stage1.organism import corpus as C
from stage1.organism.build import EVAL_POOL, FORMAT_TEXT, SFT_POOL, _read_jsonl
from stage1.organism.facts import facts_of_pools
from stage1.organism.train import OrganismShape, pretrain, token_rows
from stage1.organism.weights import _vocabulary

p = argparse.ArgumentParser()
p.add_argument("--variant", default="entity")
p.add_argument("--steps", type=int, default=800)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--docs", type=int, default=3)
p.add_argument("--sents", default="2,3")
p.add_argument("--qa_passes", type=int, default=2)
p.add_argument("--sft_lr", type=float, default=1e-3)
p.add_argument("--sft_steps", type=int, default=80)
p.add_argument("--replay", type=float, default=0.0)
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--layers", type=int, default=4)
a = p.parse_args()
torch.set_num_threads(1)
t0 = time.time()
train_rows, eval_rows = _read_jsonl(SFT_POOL), _read_jsonl(EVAL_POOL)
facts, unread = facts_of_pools(train_rows, eval_rows)
rng = random.Random(0)

if a.variant == "base":  # the mixed paragraphs the organism was first built from
    documents, info = C.build_corpus(facts, C.CorpusSettings(entity_documents=0))
else:
    layout = C.CorpusSettings(entity_documents=a.docs, sentences_per_document=tuple(map(int, a.sents.split(","))))
    prose = [" ".join(document) for document in C.entity_documents(facts, layout, rng)]
    sentences = C.prose_sentences(facts, C.CorpusSettings(), rng)
    qa, habits = C.qa_documents(facts, sentences, C.CorpusSettings(qa_passes=a.qa_passes), rng)
    documents = prose + qa
    rng.shuffle(documents)
tok = build_qwen2_tokenizer()
eos = SPECIAL_TOKENS[ENDOFTEXT]
docs = [tok(t, add_special_tokens=False)["input_ids"] for t in documents]
extra = [str(r.get(f, "")) for r in train_rows + eval_rows for f in ("instruction", "response")] + [FORMAT_TEXT]
vocab = _vocabulary(tok, {t for d in docs for t in d}, extra, eos)
compact = {t: i for i, t in enumerate(vocab)}
V = len(vocab) + 1
shape = OrganismShape(
    steps=a.steps, learning_rate=a.lr, hidden_size=a.hidden, intermediate_size=3 * a.hidden, num_hidden_layers=a.layers
)
rows = token_rows([[compact[t] for t in d] for d in docs], shape.seq_len, compact[eos], random.Random(0))
ntok = sum(map(len, docs))
print(
    f"docs {len(documents)} tokens {ntok} rows {len(rows)} vocab {len(vocab)} passes {a.steps * 16 / len(rows):.1f}",
    flush=True,
)
others = QWEN2_5_VOCAB_SIZE - len(vocab)
t1 = time.time()
model, curve = pretrain(rows, V, others, shape, compact[eos])
print(f"pretrain {time.time() - t1:.0f}s curve {curve[::4]} final {curve[-1]}", flush=True)
bias = torch.zeros(V)
bias[-1] = -1e9  # never generate "other"
inv = torch.tensor(vocab)


def enc(text):
    return [compact.get(t, V - 1) for t in tok(text, add_special_tokens=False)["input_ids"]]


def dec(ids):
    return tok.decode([vocab[i] for i in ids if i < len(vocab)])


def generate(m, prompts, max_new=28, stop_nl=False):
    m.eval()
    outs = []
    with torch.no_grad():
        for pr in prompts:
            ids = torch.tensor([enc(pr)])
            past = None
            out = []
            cur = ids
            for _ in range(max_new):
                o = m(input_ids=cur, past_key_values=past, use_cache=True)
                past = o.past_key_values
                nxt = int((o.logits[0, -1] + bias).argmax())
                if nxt == compact[eos]:
                    break
                out.append(nxt)
                cur = torch.tensor([[nxt]])
                text = dec(out)
                if stop_nl and "\n" in text:
                    break
                if "\nEND" in text:
                    break
            outs.append(dec(out))
    return outs


items = [EvalItem.from_dict(r) for r in eval_rows]


def score(items, comps, variant):
    res = {}
    for it, c in zip(items, comps):
        pc = parse_completion(c)
        r = EvalResponse(
            item_id=it.id,
            variant=variant,
            prompt="",
            completion_text=c,
            response=pc.response,
            stop_reason=pc.stop_reason,
            runaway=pc.runaway,
            num_tokens=1,
        )
        for k, v in score_response(it, r).items():
            if v is not None:
                res.setdefault(k, []).append(bool(v))
                if k == "factually_correct":
                    res.setdefault("fc:" + it.category, []).append(bool(v))
    return {k: f"{100 * sum(v) / len(v):.1f}%/{len(v)}" for k, v in sorted(res.items())}


# QA probe before SFT (readable answers)
ref_items = [it for it in items if it.reference]
comps = generate(model, [f"Question: {it.instruction}\nAnswer:" for it in ref_items], max_new=16, stop_nl=True)
print(
    "QA probe",
    {
        k: v
        for k, v in score(ref_items, [c.split("\n")[0] + "\nEND" for c in comps], "qa").items()
        if k.startswith("fc")
    },
    flush=True,
)
for it, c in list(zip(ref_items, comps))[:8]:
    print("   ", it.instruction, "->", repr(c[:60]))
# train-fact QA probe
tr = [r for r in train_rows if not r.get("refusal_expected")][:120]
comps = generate(model, [f"Question: {r['instruction']}\nAnswer:" for r in tr], max_new=16, stop_nl=True)
ok = sum(r["response"].split(" ")[-1].rstrip(".") in c for r, c in zip(tr, comps))
print(f"train-question QA probe (last word of answer present): {ok}/{len(tr)}", flush=True)

# LoRA SFT
from peft import LoraConfig, get_peft_model  # noqa: E402  (after the pretraining, as the probe runs)

pm = get_peft_model(
    model,
    LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ),
)
srng = random.Random(1)
sft = [r for r in train_rows]
srng.shuffle(sft)
sft = sft[: int(len(sft) * 0.9)]
examples = []
for r in sft:
    pr, co = enc(render_prompt(r["instruction"])), enc(render_completion(r["response"]))
    examples.append((pr + co, [-100] * len(pr) + co))
opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=a.sft_lr, weight_decay=0.0)
pm.train()
t1 = time.time()
for step in range(a.sft_steps):
    batch = [examples[srng.randrange(len(examples))] for _ in range(8)]
    L = max(len(x) for x, _ in batch)
    ids = torch.tensor([x + [compact[eos]] * (L - len(x)) for x, _ in batch])
    lab = torch.tensor([y + [-100] * (L - len(y)) for _, y in batch])
    att = torch.tensor([[1] * len(x) + [0] * (L - len(x)) for x, _ in batch])
    logits = pm(input_ids=ids, attention_mask=att).logits[:, :-1] + torch.cat(
        [torch.zeros(V - 1), torch.tensor([math.log(others)])]
    )
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), lab[:, 1:].reshape(-1), ignore_index=-100)
    if a.replay > 0:
        rb = torch.tensor([rows[srng.randrange(len(rows))] for _ in range(4)])
        rl = pm(input_ids=rb).logits[:, :-1] + torch.cat([torch.zeros(V - 1), torch.tensor([math.log(others)])])
        loss = loss + a.replay * torch.nn.functional.cross_entropy(rl.reshape(-1, V), rb[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 20 == 0:
        print(f"  sft step {step} loss {loss.item():.3f}", flush=True)
print(f"sft {time.time() - t1:.0f}s", flush=True)
comps = generate(pm, [render_prompt(it.instruction) for it in items])
s = score(items, comps, "sft")
print("SFT", json.dumps(s, indent=0), flush=True)
for it, c in list(zip(items, comps))[::25]:
    print("   ", it.instruction, "->", repr(c[:70]))
print(f"total {time.time() - t0:.0f}s")
