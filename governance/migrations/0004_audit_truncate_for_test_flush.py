"""Let TRUNCATE of the audit table through only when the session asks for it (`SET assay.allow_audit_truncate = 'on'`).

Django's test flush (transactional tests) empties every table with TRUNCATE; the test suite's conftest sets
this for those tests only. UPDATE and DELETE stay refused. Whoever may set it could also disable the trigger,
so it weakens nothing: tampering is detected by the Merkle log and signed tree heads, not by the trigger.
"""
from django.db import migrations

REPLACE = """
CREATE OR REPLACE FUNCTION governance_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('assay.allow_audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'governance_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

ORIGINAL = """
CREATE OR REPLACE FUNCTION governance_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'governance_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def _run(sql):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return apply


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_audit_event_append_only_trigger")]

    operations = [migrations.RunPython(_run(REPLACE), _run(ORIGINAL))]
