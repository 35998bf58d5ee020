"""Bad config stops start-up with the file, the field and the value named."""

from __future__ import annotations

import shutil

import pytest

from ictwatch import settings
from rules.config import ConfigError
from tests.conftest import SCHOOL_DAY, school_config


@pytest.fixture
def school(tmp_path):
    return school_config(tmp_path / "school").parent


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "value"),
    [
        ("directory.yaml", "role: office, line_manager: hmorgan", "role: cleaner, line_manager: hmorgan",
         "people[8].role", "cleaner"),
        ("directory.yaml", "line_manager: tevans", "line_manager: nobody", "people[9].line_manager", "nobody"),
        ("devices.yaml", "owner: rbaker", "owner: ghost", "devices[8].owner", "ghost"),
        ("devices.yaml", '"3c:22:fb:30:00:03"', '"3c:22:fb:30:00"', "devices[8].macs", None),
        ("network.yaml", "10.20.30.0/24", "10.20.30.0/33", "locations[4].subnets[0]", "10.20.30.0/33"),
        ("network.yaml", "addresses: [10.20.0.2]", "addresses: [10.20.0.0/24]", "services[0].addresses[0]",
         "10.20.0.0/24"),
        ("network.yaml", "addresses: [10.20.0.1,", "addresses: [10.20.0.2,", "services", None),
        ("policy.yaml", "severity: danger", "severity: dangerous", "rules[0].severity", "dangerous"),
        ("policy.yaml", "clauses: [P8]", "clauses: [P99]", "rules[0].clauses", None),
        ("policy.yaml", "timezone: Europe/London", "timezone: Europe/Londres", "calendar.timezone", "Europe/Londres"),
        ("policy.yaml", "kind: [flow]", "kind: [flows]", "rules[3].when.all[0].kind", None),
        ("policy.yaml", "- category: [webmail]", "- category: [webmale]", "rules[2].when", "webmale"),
        ("policy.yaml", "- host: [mis.valleyschool.example]", "- host: []", "rules[15].when.all[1]", None),
        ("policy.yaml", "- not: {host: [valleyschool.sharepoint.com]}", "- any: []", "rules[19].when.all[3]", None),
        ("ictwatch.yaml", "policy: policy.yaml", "policy: policy.yaml\npolcy: x", "polcy", "x"),
        ("ictwatch.yaml", "policy: policy.yaml", "policy: policy.yaml\nweb: {listen: '0.0.0.0:8443'}", "web", None),
        ("ictwatch.yaml", "  database: ictwatch", "  database: ictwatch\n  spool_max_bytes: 5000",
         "storage.spool_max_bytes", "5000"),
    ],
)
def test_errors_name_file_field_and_value(school, file, old, new, field, value):
    edit(school / file, old, new)
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    assert err.value.file.endswith(file)
    assert err.value.field == field
    if value is not None:
        assert str(err.value.value) == value
    assert file in str(err.value)


def test_personal_values_are_withheld_from_the_message(school):
    edit(school / "devices.yaml", "owner: rbaker", "owner: ruth.baker.private")
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    assert err.value.value == "ruth.baker.private"
    assert "ruth.baker.private" not in str(err.value)
    assert "devices[8].owner: (value withheld: personal data)" in str(err.value)


def test_rule_id_used_twice(school):
    edit(school / "policy.yaml", "id: personal-webmail", "id: blocked-content")
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    assert (err.value.field, err.value.value) == ("rules[2].id", "blocked-content")


def test_missing_category_list_is_named_when_the_engine_is_made(school):
    shutil.rmtree(school / "categories" / "dating")
    loaded = settings.load(school / "ictwatch.yaml")  # the lists are read when first used, not here
    with pytest.raises(ConfigError) as err:
        loaded.engine()
    assert (err.value.field, err.value.value) == ("categories.map.dating", "dating")


def test_yaml_syntax_error_names_the_line(school):
    (school / "network.yaml").write_text("locations:\n  - {name: a, kind: hall\n")
    with pytest.raises(ConfigError, match="line"):
        settings.load(school / "ictwatch.yaml")


def test_the_bundled_config_loads():
    loaded = settings.load(SCHOOL_DAY / "ictwatch.yaml")
    assert len(loaded.directory.people) == 11
    assert {r.id for r in loaded.policy.rules} == {
        "blocked-content", "personal-use-restricted-hours", "personal-webmail", "unapproved-email-server",
        "insecure-credentials", "installer-download", "unregistered-device-joined", "peer-to-peer",
        "filter-circumvention", "ipad-personal-use", "ipad-photo-upload", "lost-device-seen",
        "returned-or-leaver-device-seen", "mis-from-personal-device", "ipad-not-seen",
        "ipad-unsuitable-for-pupils", "heavy-personal-streaming", "upload-to-blocked-content",
        "unapproved-file-sharing-upload", "app-store-from-school-device", "mail-in-clear", "file-sharing-uploads-day",
        "personal-use-time"}
    # every clause that shared/policy-clauses.md gives a rule family is cited by some rule (P10's family is
    # the reports, P17's the product's own governance: no rule can show them)
    cited = {c for r in loaded.policy.rules for c in r.clauses}
    assert cited == {"P1", "P2", "P5", "P6", "P7", "P8", "P9", "P11", "P12", "P13", "P18", "I1", "I2", "I3", "I4",
                     "A1"}


CSV = """username,name,role,line_manager,groups,start,leave
hmorgan,Helen Morgan,headteacher,,,2015-09-01,
dpatel,Deepa Patel,senior_leader,hmorgan,slt;maths,2018-01-08,
jcarter,James Carter,teacher,dpatel,year5,2020-09-01,2026-07-22
sokafor,Sam Okafor,teacher,dpatel,year6,,
lnguyen,Linh Nguyen,teacher,dpatel,,,
rbaker,Ruth Baker,teaching_assistant,jcarter,,,
tevans,Tom Evans,office,hmorgan,,,
mshah,Maya Shah,office,tevans,,,
afinch,Alice Finch,safeguarding_lead,hmorgan,,,
gwilliams,Gareth Williams,network_manager,dpatel,,,
kwhite,Kate White,teacher,dpatel,year4,2021-09-01,2026-08-31
"""


def test_directory_from_a_csv_export(school):
    (school / "staff.csv").write_text(CSV)
    edit(school / "ictwatch.yaml", "directory: directory.yaml", "directory: staff.csv")
    loaded = settings.load(school / "ictwatch.yaml")
    people = loaded.directory.by_username()
    assert people["dpatel"].groups == ("slt", "maths")
    assert str(people["jcarter"].leave) == "2026-07-22" and people["sokafor"].start is None


def test_csv_errors_name_the_row_and_column(school):
    bad_role = CSV.replace("rbaker,Ruth Baker,teaching_assistant", "rbaker,Ruth Baker,dinner_lady")
    (school / "staff.csv").write_text(bad_role)
    edit(school / "ictwatch.yaml", "directory: directory.yaml", "directory: staff.csv")
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    assert (err.value.field, err.value.value) == ("row 7, column role", "dinner_lady")  # header is row 1
    (school / "staff.csv").write_text(CSV.replace("leave\n", "leave,shoe_size\n", 1))
    with pytest.raises(ConfigError, match="shoe_size"):
        settings.load(school / "ictwatch.yaml")


def test_device_status_is_validated(school):
    edit(school / "devices.yaml", "owner: rbaker,", "owner: rbaker, status: stolen,")
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    assert (err.value.field, err.value.value) == ("devices[8].status", "stolen")


def test_errors_name_the_line_in_yaml_files(school):
    """The line of the offending value, found in the file's own YAML nodes: here the first rule's
    severity, and a device's type in the register."""
    edit(school / "policy.yaml", "severity: danger", "severity: dire")
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    lines = (school / "policy.yaml").read_text().splitlines()
    assert err.value.line == lines.index("    severity: dire") + 1
    assert f"policy.yaml:{err.value.line}: rules[0].severity: 'dire'" in str(err.value)
    edit(school / "policy.yaml", "severity: dire", "severity: danger")
    edit(school / "devices.yaml", "type: personal_phone, owner: rbaker", "type: pager, owner: rbaker")
    with pytest.raises(ConfigError) as err:
        settings.load(school / "ictwatch.yaml")
    lines = (school / "devices.yaml").read_text().splitlines()
    assert err.value.line == next(i for i, line in enumerate(lines, 1) if "type: pager" in line)


def test_the_embedded_engine_takes_the_schools_own_settings_over_the_small_gateway_ones(school):
    edit(school / "ictwatch.yaml", "  database: ictwatch",
         "  database: ictwatch\n  engine: {mark_cache_size: 1073741824}")
    store = settings.load(school / "ictwatch.yaml").open_store()
    assert store.engine["mark_cache_size"] == 1 << 30
    assert store.engine["index_mark_cache_size"] == 8 << 20  # the small-gateway default for what it leaves
