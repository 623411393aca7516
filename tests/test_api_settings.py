"""The Python API's keyword settings are typed: a misspelt or ill-typed one is one BadInputError line."""

import pytest

from realignkit import audit, repair
from realignkit.common import BadInputError


def test_audit_names_an_unknown_setting_before_loading_anything(tmp_path):
    with pytest.raises(BadInputError, match=r"^audit: limitt: unknown key \(did you mean 'limit'\?\)$"):
        audit(tmp_path / "no-model", suites=["x"], limitt=3)
    with pytest.raises(BadInputError, match=r"^audit: max_new_tokens: "):
        audit(tmp_path / "no-model", suites=["x"], max_new_tokens=0)


def test_repair_splits_its_settings_from_the_method_parameters(tiny_organism, tmp_path):
    lab = tiny_organism
    result = repair("interpolate", aligned=lab / "aligned", tuned=lab / "harmful-mix-0.1-full", base=lab / "base",
                    alpha=0.3, self_check=False, out=tmp_path / "out")
    assert result.parameters["alpha"] == 0.3 and "self_check" not in result.parameters
    with pytest.raises(BadInputError, match=r"^repair: self_check: "):
        repair("interpolate", aligned=lab / "aligned", tuned=lab / "harmful-mix-0.1-full", alpha=0.3,
               self_check="maybe", out=tmp_path / "other")
    with pytest.raises(BadInputError, match="unknown parameter 'alpah'"):
        repair("interpolate", aligned=lab / "aligned", tuned=lab / "harmful-mix-0.1-full", alpah=0.3,
               out=tmp_path / "third")
    assert not (tmp_path / "other").exists() and not (tmp_path / "third").exists()
