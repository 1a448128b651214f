"""Tree ensemble kernels: the raw margin and exact path-dependent TreeSHAP (Lundberg et al. 2018,
"Consistent Individualized Feature Attribution for Tree Ensembles", Algorithm 2), the algorithm
behind xgboost's `pred_contribs=True`, so our attributions match the trainer's.

Layout: the trees of an ensemble share flat node arrays; `roots[t]` is the node of tree t's root.
- feature int32 [nodes]: split feature, -1 at leaves.
- threshold float32 [nodes]: go left iff x < threshold (strict, compared in float32 as xgboost does).
- left, right int32 [nodes]: global node index of the children, -1 at leaves.
- default_left bool [nodes]: where a missing value (NaN) goes.
- value float32 [nodes]: the leaf value (margin space), read at leaves only.
- cover float64 [nodes]: hessian sum of the training rows that reached the node.
X is float32 [n, F], NaN for missing. Contributions are float64 [n, F + 1], margin (log-odds)
space, the last column the bias: the ensemble's expected margin including the base margin.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True)
def _next(node, x, feature, threshold, left, right, default_left):
    v = x[feature[node]]
    if np.isnan(v):
        return left[node] if default_left[node] else right[node]
    return left[node] if v < threshold[node] else right[node]


@nb.njit(nogil=True, cache=True)
def margin(X, feature, threshold, left, right, default_left, value, roots, base_margin):
    """Sum over trees of the leaf each row reaches, plus the base margin: float64 [n]."""
    out = np.empty(X.shape[0], np.float64)
    for r in range(X.shape[0]):
        x = X[r]
        total = 0.0
        for t in range(roots.shape[0]):
            node = roots[t]
            while feature[node] >= 0:
                node = _next(node, x, feature, threshold, left, right, default_left)
            total += value[node]
        out[r] = total + base_margin
    return out


@nb.njit(nogil=True, cache=True)
def tree_stats(feature, left, right, value, cover, roots):
    """(sum over trees of the cover-weighted mean leaf value, the deepest leaf's depth).

    The first is the ensemble's expected margin without the base margin (the bias column of
    the contributions less base_margin); the second sizes the TreeSHAP path buffers. Both are
    properties of the model, so callers compute them once rather than per batch. (nan, -1) when
    the child links do not form trees."""
    n = feature.shape[0]
    mean = np.zeros(n, np.float64)
    order = np.empty(n, np.int64)
    stack = np.empty(n + 1, np.int64)
    depth = np.zeros(n, np.int64)
    expected = 0.0
    deepest = 0
    for t in range(roots.shape[0]):
        # Pre-order then reversed, so children are done before their parent without assuming
        # child ids exceed parent ids (xgboost reuses the slots of pruned nodes).
        count = 0
        sp = 0
        stack[sp] = roots[t]
        sp += 1
        depth[roots[t]] = 0
        while sp > 0:
            sp -= 1
            node = stack[sp]
            if count == n:
                # More visits than nodes: the children links hold a cycle (a corrupt model).
                return np.nan, -1
            order[count] = node
            count += 1
            if feature[node] >= 0:
                for child in (left[node], right[node]):
                    depth[child] = depth[node] + 1
                    stack[sp] = child
                    sp += 1
            elif depth[node] > deepest:
                deepest = depth[node]
        for k in range(count - 1, -1, -1):
            node = order[k]
            if feature[node] < 0:
                mean[node] = value[node]
            else:
                a = left[node]
                b = right[node]
                # Weighted by the children's covers over the parent's, as xgboost does (they
                # can differ from the children's sum in the last float32 bit).
                mean[node] = (mean[a] * cover[a] + mean[b] * cover[b]) / cover[node]
        expected += mean[roots[t]]
    return expected, deepest


@nb.njit(nogil=True, cache=True)
def _extend(feat, zero, one, pw, lv, ud, zero_fraction, one_fraction, feature_index):
    feat[lv, ud] = feature_index
    zero[lv, ud] = zero_fraction
    one[lv, ud] = one_fraction
    pw[lv, ud] = 1.0 if ud == 0 else 0.0
    for i in range(ud - 1, -1, -1):
        pw[lv, i + 1] += one_fraction * pw[lv, i] * (i + 1) / (ud + 1)
        pw[lv, i] = zero_fraction * pw[lv, i] * (ud - i) / (ud + 1)


@nb.njit(nogil=True, cache=True)
def _unwind(feat, zero, one, pw, lv, ud, path_index):
    one_fraction = one[lv, path_index]
    zero_fraction = zero[lv, path_index]
    next_one = pw[lv, ud]
    for i in range(ud - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = pw[lv, i]
            pw[lv, i] = next_one * (ud + 1) / ((i + 1) * one_fraction)
            next_one = tmp - pw[lv, i] * zero_fraction * (ud - i) / (ud + 1)
        else:
            pw[lv, i] = pw[lv, i] * (ud + 1) / (zero_fraction * (ud - i))
    for i in range(path_index, ud):
        feat[lv, i] = feat[lv, i + 1]
        zero[lv, i] = zero[lv, i + 1]
        one[lv, i] = one[lv, i + 1]


@nb.njit(nogil=True, cache=True)
def _unwound_sum(zero, one, pw, lv, ud, path_index):
    one_fraction = one[lv, path_index]
    zero_fraction = zero[lv, path_index]
    next_one = pw[lv, ud]
    total = 0.0
    for i in range(ud - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = next_one * (ud + 1) / ((i + 1) * one_fraction)
            total += tmp
            next_one = pw[lv, i] - tmp * zero_fraction * (ud - i) / (ud + 1)
        elif zero_fraction != 0.0:
            total += (pw[lv, i] / zero_fraction) / ((ud - i) / (ud + 1))
    return total


@nb.njit(nogil=True, cache=True)
def contributions(X, feature, threshold, left, right, default_left, value, cover, roots, bias, max_depth):
    """Exact TreeSHAP values: float64 [n, F + 1], each row summing to its margin.

    `bias` is the expected margin (base margin + tree_stats()[0]) and `max_depth` the deepest
    leaf's depth (tree_stats()[1]); a smaller max_depth than the model's overruns the buffers.

    Algorithm 2 recurses; here an explicit stack visits the same nodes in the same order. Level
    l of the path buffers holds the unique path of the node being visited at tree depth l, a copy
    of its parent's (level l - 1) extended by one element: a parent's level is not overwritten
    until both its children's subtrees are done, which is what the recursion relied on too."""
    n = X.shape[0]
    n_features = X.shape[1]
    phi = np.zeros((n, n_features + 1), np.float64)
    width = max_depth + 2
    feat = np.empty((width, width), np.int64)
    zero = np.empty((width, width), np.float64)
    one = np.empty((width, width), np.float64)
    pw = np.empty((width, width), np.float64)
    depth_cap = 2 * width + 2
    s_node = np.empty(depth_cap, np.int64)
    s_level = np.empty(depth_cap, np.int64)
    s_ud = np.empty(depth_cap, np.int64)
    s_zero = np.empty(depth_cap, np.float64)
    s_one = np.empty(depth_cap, np.float64)
    s_feat = np.empty(depth_cap, np.int64)
    for r in range(n):
        x = X[r]
        out = phi[r]
        out[n_features] = bias
        for t in range(roots.shape[0]):
            sp = 0
            s_node[0] = roots[t]
            s_level[0] = 0
            s_ud[0] = 0
            s_zero[0] = 1.0
            s_one[0] = 1.0
            s_feat[0] = -1
            sp = 1
            while sp > 0:
                sp -= 1
                node = s_node[sp]
                lv = s_level[sp]
                ud = s_ud[sp]
                if lv > 0:
                    for k in range(ud):
                        feat[lv, k] = feat[lv - 1, k]
                        zero[lv, k] = zero[lv - 1, k]
                        one[lv, k] = one[lv - 1, k]
                        pw[lv, k] = pw[lv - 1, k]
                _extend(feat, zero, one, pw, lv, ud, s_zero[sp], s_one[sp], s_feat[sp])

                if feature[node] < 0:
                    leaf = value[node]
                    for i in range(1, ud + 1):
                        w = _unwound_sum(zero, one, pw, lv, ud, i)
                        out[feat[lv, i]] += w * (one[lv, i] - zero[lv, i]) * leaf
                    continue

                split = feature[node]
                hot = _next(node, x, feature, threshold, left, right, default_left)
                cold = right[node] if hot == left[node] else left[node]
                w = cover[node]
                hot_zero = cover[hot] / w
                cold_zero = cover[cold] / w
                incoming_zero = 1.0
                incoming_one = 1.0
                # A feature split on again further down keeps one path element: undo the earlier
                # split and fold its fractions into this one.
                path_index = 0
                while path_index <= ud:
                    if feat[lv, path_index] == split:
                        break
                    path_index += 1
                if path_index != ud + 1:
                    incoming_zero = zero[lv, path_index]
                    incoming_one = one[lv, path_index]
                    _unwind(feat, zero, one, pw, lv, ud, path_index)
                    ud -= 1
                # Pushed cold first so the hot child is visited first, as in the recursion. A cold
                # child no training row reached carries zero weight on every path element, so
                # skipping it changes nothing but avoids dividing by its zero fractions.
                if cold_zero * incoming_zero != 0.0:
                    s_node[sp] = cold
                    s_level[sp] = lv + 1
                    s_ud[sp] = ud + 1
                    s_zero[sp] = cold_zero * incoming_zero
                    s_one[sp] = 0.0
                    s_feat[sp] = split
                    sp += 1
                s_node[sp] = hot
                s_level[sp] = lv + 1
                s_ud[sp] = ud + 1
                s_zero[sp] = hot_zero * incoming_zero
                s_one[sp] = incoming_one
                s_feat[sp] = split
                sp += 1
    return phi


def prepare() -> None:
    """Compile the kernels for the types TreeEnsemble passes (before serving)."""
    X = np.zeros((1, 1), np.float32)
    feature = np.array([0, -1, -1], np.int32)
    threshold = np.zeros(3, np.float32)
    left = np.array([1, -1, -1], np.int32)
    right = np.array([2, -1, -1], np.int32)
    default_left = np.ones(3, np.bool_)
    value = np.array([0.0, -1.0, 1.0], np.float32)
    cover = np.array([2.0, 1.0, 1.0])
    roots = np.zeros(1, np.int64)
    margin(X, feature, threshold, left, right, default_left, value, roots, 0.0)
    expected, depth = tree_stats(feature, left, right, value, cover, roots)
    contributions(X, feature, threshold, left, right, default_left, value, cover, roots, expected, depth)
