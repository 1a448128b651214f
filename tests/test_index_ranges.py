"""Integer inputs that index an embedding table are checked against the table's rows before
they reach ONNX Runtime: out of range is INVALID_ARGUMENT naming the input, not INTERNAL."""
import numpy as np
import pytest
from hanzo.server.models import ModelRepository
from hanzo.server.models.errors import InvalidArgument
from hanzo.server.models.index_ranges import IndexRange, graph_index_ranges
from hanzo.training.demo_models import user_tower
from hanzo.training.repository_writer import write_version
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

ROWS, DIM, WIDTH = 10, 3, 4


def lookup_model():
    """ids INT64 [N, 4] -> Gather on a [10, 3] table -> sum [N, 3]; codes INT32 [N] -> Cast,
    Unsqueeze -> Gather on axis 1 of a [3, 7] table; clipped INT64 [N, 4] -> Clip -> Gather
    (any value is fine); scale FP32 [N, 1]."""
    table = np.arange(ROWS * DIM, dtype=np.float32).reshape(ROWS, DIM)
    wide = np.ones((DIM, 7), dtype=np.float32)
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(wide, "wide"),
             numpy_helper.from_array(np.array(0, np.int64), "lo"),
             numpy_helper.from_array(np.array(ROWS - 1, np.int64), "hi"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["vecs"]),
        helper.make_node("ReduceSum", ["vecs", "axis1"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["codes"], ["codes64"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["codes64", "axis1"], ["codes2"]),
        helper.make_node("Gather", ["wide", "codes2"], ["picked"], axis=1),  # [3, N, 1]
        helper.make_node("Clip", ["clipped", "lo", "hi"], ["safe"]),
        helper.make_node("Gather", ["table", "safe"], ["safe_vecs"]),
        helper.make_node("ReduceSum", ["safe_vecs", "axis1"], ["safe_sum"], keepdims=0),
        helper.make_node("Add", ["summed", "safe_sum"], ["both"]),
        helper.make_node("Mul", ["both", "scale"], ["out"]),
        helper.make_node("Identity", ["picked"], ["picked_out"]),
    ]
    graph = helper.make_graph(
        nodes, "lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", WIDTH]),
         helper.make_tensor_value_info("codes", TensorProto.INT32, ["n"]),
         helper.make_tensor_value_info("clipped", TensorProto.INT64, ["n", WIDTH]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["n", 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", DIM]),
         helper.make_tensor_value_info("picked_out", TensorProto.FLOAT, [DIM, "n", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_lookup(root, name="lookup", max_batch_size=0):
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size)
    return write_version(root, config, 1, lookup_model())


def feeds(ids=None, codes=None, clipped=None, rows=2):
    return {"ids": np.zeros((rows, WIDTH), np.int64) if ids is None else np.asarray(ids, np.int64),
            "codes": np.zeros(rows, np.int32) if codes is None else np.asarray(codes, np.int32),
            "clipped": np.zeros((rows, WIDTH), np.int64) if clipped is None else np.asarray(clipped, np.int64),
            "scale": np.ones((rows, 1), np.float32)}


def test_ranges_read_from_the_graph():
    ranges = graph_index_ranges(lookup_model().graph)
    assert ranges == {"ids": IndexRange(-ROWS, ROWS, "table"), "codes": IndexRange(-7, 7, "wide")}


def test_demo_user_tower_clips_its_ids_so_no_range_is_imposed():
    assert graph_index_ranges(user_tower().graph) == {}


async def test_out_of_range_ids_are_invalid_argument_naming_the_input(tmp_path):
    write_lookup(tmp_path / "repo")
    repo = ModelRepository(tmp_path / "repo")
    await repo.load_all()
    model = repo.get("lookup")
    ok = await model.infer(feeds(ids=[[0, 1, 9, -10], [-1, 2, 3, 4]], codes=[6, -7], clipped=[[123456] * 4] * 2))
    assert ok["out"].shape == (2, DIM)
    with pytest.raises(InvalidArgument, match=r'input "ids": values must lie in \[-10, 10\).*got max 123456'):
        await model.infer(feeds(ids=[[0, 1, 2, 123456], [0, 0, 0, 0]]))
    with pytest.raises(InvalidArgument, match=r'input "ids": .*got min -11'):
        await model.infer(feeds(ids=[[0, 1, 2, -11], [0, 0, 0, 0]]))
    with pytest.raises(InvalidArgument, match=r'input "codes": values must lie in \[-7, 7\).*got max 7'):
        await model.infer(feeds(codes=[7, 0]))
    # The model still answers after the rejected calls.
    assert (await model.infer(feeds(rows=1)))["out"].shape == (1, DIM)
    await repo.close()


def test_exported_embedding_models_get_their_ranges(tmp_path):
    """The recommend user tower and the search encoder and scorer, exported by training's
    own code: every id input that indexes an embedding gets its table's range."""
    pytest.importorskip("torch")
    import onnx
    from hanzo.training.recommend.two_tower import ItemFeatures, TwoTower
    from hanzo.training.search.reranker import VOCAB, Reranker

    n_items = 20
    features = ItemFeatures(root=np.zeros(n_items, np.int64), sub=np.zeros(n_items, np.int64),
                            price_bucket=np.zeros(n_items, np.int64))
    TwoTower(n_items, features).export_user_tower(tmp_path / "user.onnx")
    ranges = graph_index_ranges(onnx.load(str(tmp_path / "user.onnx")).graph)
    assert {k: (r.low, r.high) for k, r in ranges.items()} == {"bought": (-21, 21), "viewed": (-21, 21)}
    Reranker().export(tmp_path / "scorer.onnx", tmp_path / "encoder.onnx")
    scorer = graph_index_ranges(onnx.load(str(tmp_path / "scorer.onnx")).graph)
    encoder = graph_index_ranges(onnx.load(str(tmp_path / "encoder.onnx")).graph)
    assert {k: (r.low, r.high) for k, r in scorer.items()} == {"query": (-VOCAB, VOCAB)}
    assert {k: (r.low, r.high) for k, r in encoder.items()} == {"product_ids": (-VOCAB, VOCAB)}


def positional_model():
    """query INT64 [1, words] -> embedding [1, words, 3] + position[:words] (a [4, 3] table,
    sliced by the query's own length); lexical FP32 [1, candidates, 2] and ids INT64
    [1, candidates] share `candidates`."""
    inits = [numpy_helper.from_array(np.ones((ROWS, DIM), np.float32), "embedding"),
             numpy_helper.from_array(np.ones((4, DIM), np.float32), "position"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array([0], np.int64), "zero1"),
             numpy_helper.from_array(np.array([2], np.int64), "axis2")]
    nodes = [
        helper.make_node("Gather", ["embedding", "query"], ["embedded"]),
        helper.make_node("Shape", ["query"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["words"], axis=0),
        helper.make_node("Unsqueeze", ["words", "zero1"], ["end"]),
        helper.make_node("Slice", ["position", "zero1", "end", "zero1"], ["positions"]),
        helper.make_node("Add", ["embedded", "positions"], ["tokens"]),
        helper.make_node("ReduceSum", ["lexical", "axis2"], ["lex"], keepdims=0),
        helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["lex", "idsf"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "positional",
        [helper.make_tensor_value_info("query", TensorProto.INT64, [1, "words"]),
         helper.make_tensor_value_info("lexical", TensorProto.FLOAT, [1, "candidates", 2]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "candidates"])],
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, "words", DIM]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "candidates"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


async def test_a_length_past_a_sliced_table_and_unequal_shared_dims_are_invalid_argument(tmp_path):
    write_version(tmp_path / "repo", mc.ModelConfig(name="positional", backend="onnxruntime"), 1,
                  positional_model())
    repo = ModelRepository(tmp_path / "repo")
    await repo.load_all()
    model = repo.get("positional")

    def run(words: int, candidates: int, ids: int | None = None):
        return {"query": np.zeros((1, words), np.int64), "lexical": np.zeros((1, candidates, 2), np.float32),
                "ids": np.zeros((1, candidates if ids is None else ids), np.int64)}

    assert (await model.infer(run(4, 3)))["tokens"].shape == (1, 4, DIM)
    with pytest.raises(InvalidArgument, match='input "query".*dimension 1 is 5.*position'):
        await model.infer(run(5, 3))
    with pytest.raises(InvalidArgument, match='input "ids".*candidates'):
        await model.infer(run(2, 3, ids=4))
    await repo.close()
