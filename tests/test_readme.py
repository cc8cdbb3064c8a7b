"""The README stays true: it lists every setting and shows the two commands."""

from pathlib import Path

from core.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def env_names(name: str, field) -> list[str]:
    alias = field.validation_alias
    if alias is not None:
        return [str(choice) for choice in alias.choices]
    return [f"SPOTLESS_{name.upper()}"]


def test_every_setting_is_documented():
    missing = [env_names(name, field)[0] for name, field in Settings.model_fields.items()
               if not any(f"`{env}`" in README for env in env_names(name, field))]
    assert missing == [], f"settings missing from README.md: {missing}"


def test_quick_start_is_two_commands():
    assert "make run" in README and "make test" in README
