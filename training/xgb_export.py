"""Export a trained xgboost Booster for serving, twice over:

- `tree_ensemble`: our TreeEnsemble (hanzo.server.models.tree_ensemble), read from the booster's
  own JSON model, for margins and exact TreeSHAP explanations without xgboost at serving time.
- `export_onnx`: an ONNX graph for the generic ONNX Runtime backend, input "features" float32
  [batch, n_features] (NaN = missing), output "probability" float32 [batch, 1] = P(class 1).

Both use every tree in the booster, as Booster.predict does by default; after early stopping,
export `booster[: booster.best_iteration + 1]` to serve the best iteration instead.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import xgboost
from hanzo.server.models.tree_ensemble import TreeEnsemble
from onnx import TensorProto, helper

# Objectives whose margin is logit(probability); base_score is stored in probability space for
# them and must go through the same link to become the margin the trees add to.
_LOGIT_OBJECTIVES = {"binary:logistic", "reg:logistic", "binary:logitraw"}
_IDENTITY_OBJECTIVES = {"reg:squarederror"}
# Objectives whose margin is log(mean): counts and spends.
_LOG_OBJECTIVES = {"count:poisson", "reg:tweedie", "reg:gamma"}

# Default-domain opset for the Slice the export appends; ONNX Runtime 1.20+ runs it.
_ONNX_OPSET = 17


def _base_score(raw: str) -> float:
    """xgboost 3 writes base_score as a bracketed list string ("[5.24E-1]": one value per target),
    2.x as a bare number string ("5.24E-1")."""
    parsed = json.loads(raw)
    if isinstance(parsed, list):
        if len(parsed) != 1:
            raise ValueError(f"base_score {raw!r}: only single-target models are supported")
        parsed = parsed[0]
    return float(parsed)


def base_margin(model: dict) -> float:
    """The margin every row starts from, from the parsed JSON model (booster.save_raw("json"))."""
    learner = model["learner"]
    objective = learner["objective"]["name"]
    # xgboost keeps base_score as a float32; round to it before the link, as xgboost does.
    score = float(np.float32(_base_score(learner["learner_model_param"]["base_score"])))
    if objective in _LOGIT_OBJECTIVES:
        return math.log(score / (1.0 - score))
    if objective in _IDENTITY_OBJECTIVES:
        return score
    if objective in _LOG_OBJECTIVES:
        return math.log(score)
    raise ValueError(f"objective {objective!r} is not supported")


def tree_ensemble(booster: xgboost.Booster) -> TreeEnsemble:
    """The booster's trees as flat arrays (child indices made global across trees)."""
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    params = learner["learner_model_param"]
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
        raise ValueError("only single-output models are supported (num_class, num_target)")
    booster_kind = learner["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        raise ValueError(f"gradient booster {booster_kind!r} is not supported (gbtree only)")
    trees = learner["gradient_booster"]["model"]["trees"]

    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("feature", "threshold", "left", "right", "default_left", "value", "cover")}
    roots = np.empty(len(trees), np.int64)
    offset = 0
    for t, tree in enumerate(trees):
        if any(tree.get("split_type", [])):
            raise ValueError(f"tree {t} has categorical splits, which the kernels do not implement")
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ValueError(f"tree {t} has vector leaves (multi-target), which are not supported")
        left = np.asarray(tree["left_children"], np.int64)
        right = np.asarray(tree["right_children"], np.int64)
        leaf = left == -1
        # split_conditions holds the threshold at inner nodes and the leaf value at leaves; both
        # are float32 in xgboost and written with enough digits to round-trip exactly.
        conditions = np.asarray(tree["split_conditions"], np.float64).astype(np.float32)
        parts["feature"].append(np.where(leaf, -1, np.asarray(tree["split_indices"], np.int64)))
        parts["threshold"].append(np.where(leaf, np.float32(0), conditions))
        parts["left"].append(np.where(leaf, -1, left + offset))
        parts["right"].append(np.where(leaf, -1, right + offset))
        parts["default_left"].append(np.asarray(tree["default_left"], np.int64) != 0)
        parts["value"].append(np.where(leaf, conditions, np.float32(0)))
        parts["cover"].append(np.asarray(tree["sum_hessian"], np.float64))
        roots[t] = offset
        offset += left.shape[0]

    arrays = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    return TreeEnsemble(**arrays, roots=roots, base_margin=base_margin(model),
                        n_features=int(params["num_feature"]))


def _probability_graph(model: onnx.ModelProto, n_features: int, margin: float) -> onnx.ModelProto:
    """Reduce the converter's outputs (label int64 [n], probabilities float [n, 2], perhaps behind a
    ZipMap) to one float tensor "probability" [batch, 1]: what the generic backend serves and
    what a Triton-style config with dims [1] describes, like the other scoring models."""
    graph = model.graph
    classifiers = [n for n in graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(classifiers) != 1:
        raise ValueError(f"expected one TreeEnsembleClassifier in the converted graph, found {len(classifiers)}")
    probabilities = classifiers[0].output[1]
    # The converter derives the base value itself and, when the first tree is a single zero
    # leaf, passes base_score through in probability space; set the margin we read instead.
    for attr in list(classifiers[0].attribute):
        if attr.name == "base_values":
            classifiers[0].attribute.remove(attr)
    classifiers[0].attribute.append(helper.make_attribute("base_values", [margin]))

    consts = {"prob_starts": [1], "prob_ends": [2], "prob_axes": [1]}
    for name, vals in consts.items():
        graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [1], vals))
    graph.node.append(helper.make_node("Slice", [probabilities, *consts], ["probability"], name="p_fraud"))

    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]))
    # Drop whatever only fed the old outputs (ZipMap, casts): nodes nothing now reads.
    needed = {"probability"}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept = onnx.NodeProto()
            kept.CopyFrom(node)  # a copy: the originals go with the del below
            keep.append(kept)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))

    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features]))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, _ONNX_OPSET)
            break
    else:
        model.opset_import.append(helper.make_opsetid("", _ONNX_OPSET))
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(booster: xgboost.Booster, n_features: int, path: str | Path) -> onnx.ModelProto:
    """Write the booster as ONNX at `path` (input "features" float32 [batch, n_features], NaN =
    missing; output "probability" float32 [batch, 1]) and return the model. Binary logistic only."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ValueError(f"export_onnx serves P(class 1) of binary:logistic models, not {objective!r}")
    if n_features != booster.num_features():
        raise ValueError(f"n_features={n_features} but the booster was trained on {booster.num_features()}")
    converted = convert_xgboost(booster, initial_types=[("features", FloatTensorType([None, n_features]))])
    model = _probability_graph(converted, n_features, base_margin(json.loads(booster.save_raw("json"))))
    onnx.save(model, str(path))
    return model
