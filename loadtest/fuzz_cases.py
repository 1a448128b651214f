"""One fuzz case per call: the method (in turn, so every method gets its share) and a body,
valid, structurally mutated, byte-mutated or random, drawn from a generator seeded by the
run's seed and the call's index, so a case is the same whatever the concurrency and can be
replayed alone."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from . import fuzz_bytes
from .fuzz_infer import InferFuzzer
from .fuzz_schema import Method, Vocabulary
from .fuzz_values import Builder, serialize
from .targets import EXAMPLES, example

# Calls that would take the server's own models away: fuzzed with names it does not hold,
# unless the run is told it may be destructive.
DESTRUCTIVE = {"RepositoryModelUnload", "RepositoryModelLoad"}
NO_SUCH_MODEL = "fuzz-no-such-model"
KINDS = (("valid", 0.08), ("mutated", 0.32), ("random-message", 0.2), ("bytes", 0.25), ("random-bytes", 0.1),
         ("empty", 0.05))


@dataclass(frozen=True)
class Case:
    method: Method
    body: bytes
    what: str  # a few words on the mutation, for the report
    index: int


class CaseMaker:
    def __init__(self, methods: list[Method], vocab: Vocabulary, seed: int, max_string_bytes: int,
                 destructive: bool = False) -> None:
        self.methods = methods
        self.vocab = vocab
        self.seed = seed
        self.max_string = max_string_bytes
        self.infer = InferFuzzer(vocab, max_string_bytes)
        safe = Vocabulary({**vocab.by_field, "model_name": [NO_SUCH_MODEL], "name": [NO_SUCH_MODEL]},
                          vocab.models, vocab.metadata, vocab.demo, vocab.world)
        self._safe = vocab if destructive else safe
        self._destructive = destructive
        self._classes = {m.path: message_factory.GetMessageClass(m.descriptor.input_type) for m in methods}

    def vocab_for(self, method: Method) -> Vocabulary:
        return self._safe if method.name in DESTRUCTIVE else self.vocab

    def case(self, index: int) -> Case:
        """The `index`-th case of this seed."""
        method = self.methods[index % len(self.methods)]
        rng = random.Random(self.seed * 1_000_003 + index)
        kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        try:
            body, what = self._body(method, kind, rng)
        except Exception as exc:  # noqa: BLE001 (a fuzzer bug must not read as the server's: say so)
            body, what = b"", f"fuzzer could not build a {kind} case ({type(exc).__name__}: {exc}); sent empty"
        return Case(method, body, what, index)

    def _body(self, method: Method, kind: str, rng: random.Random) -> tuple[bytes, str]:
        if kind == "empty":
            return b"", "empty body"
        if kind == "random-bytes":
            return fuzz_bytes.random_bytes(rng, self.max_string) if rng.random() < 0.8 else fuzz_bytes.text_body(rng)
        if method.name == "ModelInfer" and kind in ("valid", "mutated") and rng.random() < 0.7:
            return self.infer.body(rng)
        builder = Builder(rng, self.vocab_for(method), self.max_string)
        if kind == "random-message":
            message = self._classes[method.path]()
            builder.fill(message, share=rng.choice((0.3, 0.6, 1.0)))
            return serialize(message), "random message: " + ", ".join(builder.notes)
        message = self.valid(method, rng)
        if kind == "valid":
            return serialize(message), "valid example"
        if kind == "mutated":
            for _ in range(rng.choice((1, 1, 2, 3))):
                builder.mutate(message)
            return serialize(message), "valid example with " + ", ".join(builder.notes)
        if rng.random() < 0.3:
            builder.mutate(message)
        body, what = fuzz_bytes.mutate(rng, serialize(message))
        return body, f"bytes: {what}" + (f" (of an example with {', '.join(builder.notes)})" if builder.notes else "")

    def valid(self, method: Method, rng: random.Random) -> Message:
        """A request the server should answer OK (or with a documented refusal)."""
        cls = self._classes[method.path]
        vocab = self.vocab_for(method)
        if method.service == "hanzo.v1.Commerce" and method.name in EXAMPLES:
            manifest = vocab.world / "demo.json" if vocab.world else None
            request = example(method.name, manifest)
            if method.name == "IngestEvents":
                request["events"][0]["event_id"] = f"fuzz-{self.seed}-{rng.getrandbits(48):x}"
                request["events"][0]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return json_format.ParseDict(request, cls())
        if method.name == "ModelInfer":
            return cls.FromString(self.infer.body(rng, valid=True)[0])
        message = cls()
        fields = message.DESCRIPTOR.fields_by_name
        for name in ("name", "model_name", "service"):
            if name in fields and vocab.known(name):
                setattr(message, name, rng.choice(vocab.known(name)))
        if "list_services" in fields:  # server reflection
            if rng.random() < 0.5:
                message.list_services = ""
            else:
                message.file_containing_symbol = rng.choice(vocab.known("file_containing_symbol") or [""])
        return message
