"""The TOML file: each table lands in its options, and a misspelt option is refused by name
rather than silently ignored."""
import pytest

from hanzo.server.app.config import ServerConfig


def test_toml_tables_reach_their_sections(tmp_path):
    path = tmp_path / "hanzo.toml"
    path.write_text('[server]\nport = 6000\n[features]\nfsync = "never"\n'
                    '[recommend]\nann_ef = 120\nmax_category_share = 0.3\n')
    config = ServerConfig.from_toml(path, port=None, features={"fsync": None}, recommend={"candidates": 60})
    assert config.port == 6000 and config.features.fsync == "never"
    assert (config.recommend.ann_ef, config.recommend.max_category_share, config.recommend.candidates) == (120, 0.3, 60)


@pytest.mark.parametrize("text, words", [("[recommend]\nann_eff = 1\n", r"unknown option 'ann_eff' in \[recommend\] \(did you mean 'ann_ef'\?\)"),
                                         ("[server]\nprot = 1\n", "unknown option 'prot' in \\[server\\]"),
                                         ("[recommend]\nmax_category_share = 0\n", "max_category_share"),
                                         ("[recommend]\nann_ef = 0\n", "ann_ef")])
def test_bad_options_are_named(tmp_path, text, words):
    path = tmp_path / "hanzo.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=words):
        ServerConfig.from_toml(path)
