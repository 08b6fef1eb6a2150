"""The lazy index: byte spans of samples in JSON lists and JSONL, across files and folders."""

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optica.data.errors import BadSampleError, DataError
from optica.data.index import ConversationFile, ConversationIndex, data_files
from tests.unit.data.helpers import record, write_json

TRICKY = [
    record("a", 'brackets ] } [ { and "quotes" and \\ backslash', "ok"),
    record("b", 'unicode é 中文 🐈 and \\" escapes \n newline', "ok"),
    record("c", "<image>", "ok", image=["x.png", "y.png"]),
]


@pytest.mark.parametrize("jsonl", [False, True])
def test_round_trip_of_tricky_strings(tmp_path, jsonl):
    path = write_json(tmp_path / ("d.jsonl" if jsonl else "d.json"), TRICKY, jsonl=jsonl)
    file = ConversationFile(path)
    assert len(file) == 3
    assert [file.load(i) for i in range(3)] == TRICKY


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(
    records=st.lists(st.dictionaries(st.text(), JSON_VALUES, max_size=4), max_size=6),
    indent=st.sampled_from([None, 1]),
    ascii_only=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_any_json_list_is_indexed_exactly(tmp_path_factory, records, indent, ascii_only):
    path = tmp_path_factory.mktemp("idx") / "d.json"
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
    file = ConversationFile(path)
    assert [file.load(i) for i in range(len(file))] == records


def test_json_list_spans_are_the_objects(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('\ufeff [ {"id": 1, "x": [1, {"y": "}"}]} ,\n{"id": 2}\n]\n'.encode().decode())
    file = ConversationFile(path)
    assert [file.load(i)["id"] for i in range(len(file))] == [1, 2]
    assert file.where(1) == f"{path}[1]"


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 1}\n\n   \n{"id": 2}\n')
    assert [ConversationFile(path).load(i)["id"] for i in range(2)] == [1, 2]
    assert len(ConversationFile(path)) == 2


def test_first_brace_means_jsonl_even_with_json_suffix(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"id": 1}\n{"id": 2}\n')
    assert ConversationFile(path).jsonl and len(ConversationFile(path)) == 2


def test_folder_and_several_files_form_one_index(tmp_path):
    write_json(tmp_path / "b.jsonl", TRICKY[:2], jsonl=True)
    write_json(tmp_path / "a.json", TRICKY[2:])
    (tmp_path / "notes.txt").write_text("ignored")
    index = ConversationIndex(tmp_path)
    assert [f.path.name for f in index.files] == ["a.json", "b.jsonl"]
    assert [index.load(i)[0]["id"] for i in range(len(index))] == ["c", "a", "b"]
    both = ConversationIndex([tmp_path / "b.jsonl", tmp_path / "a.json"])
    assert [both.load(i)[0]["id"] for i in range(3)] == ["a", "b", "c"]


def test_index_pickles_without_its_memory_map(tmp_path):
    index = ConversationIndex(write_json(tmp_path / "d.json", TRICKY))
    index.load(0)
    clone = pickle.loads(pickle.dumps(index))
    assert clone.load(2)[0]["id"] == "c"


def test_index_holds_offsets_not_samples(tmp_path):
    records = [record(f"{i}", "q" * 50, "a" * 50) for i in range(2000)]
    index = ConversationIndex(write_json(tmp_path / "d.json", records))
    file = index.files[0]
    assert file.starts.dtype.name == "int64" and len(file.starts) == 2000
    assert json.loads(file._buffer()[file.starts[1234] : file.ends[1234]])["id"] == "1234"


class TestBrokenFiles:
    def test_malformed_sample_names_file_and_line(self, tmp_path):
        path = tmp_path / "d.jsonl"
        path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3,, }\n')
        file = ConversationFile(path)
        with pytest.raises(
            BadSampleError, match=rf"{path.name}: line 3: sample '#2': malformed JSON"
        ):
            file.load(2)

    def test_malformed_object_inside_a_list(self, tmp_path):
        path = tmp_path / "d.json"
        path.write_text('[\n{"id": 1},\n{"id": 2,\n "x": [1,,2]}\n]')
        with pytest.raises(
            BadSampleError,
            match=r"d.json: line 4: sample '#1': malformed JSON \(Expecting value\) near byte 32",
        ):
            ConversationFile(path).load(1)

    def test_unterminated_string_is_a_file_error(self, tmp_path):
        path = tmp_path / "d.json"
        path.write_text('[{"id": 1},\n{"id": "2}]\n')
        with pytest.raises(DataError, match=r"d.json: line 2: unterminated string"):
            ConversationFile(path)

    def test_truncated_list(self, tmp_path):
        path = tmp_path / "d.json"
        path.write_text('[{"id": 1}, {"id": 2, "c": [1, 2')
        with pytest.raises(DataError, match="file ends inside an object"):
            ConversationFile(path)

    def test_non_object_element(self, tmp_path):
        path = tmp_path / "d.json"
        path.write_text('[{"id": 1}, 7]')
        with pytest.raises(DataError, match="expected a sample object, found '7'"):
            ConversationFile(path)

    def test_not_a_list(self, tmp_path):
        path = tmp_path / "d.json"
        path.write_text('"just a string"')
        with pytest.raises(DataError, match="expected a JSON list of samples or JSONL"):
            ConversationFile(path)

    def test_missing_paths(self, tmp_path):
        with pytest.raises(DataError, match="no such data file or folder"):
            data_files(tmp_path / "nope.json")
        with pytest.raises(DataError, match="no .json or .jsonl files"):
            data_files(tmp_path)
