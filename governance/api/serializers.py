"""Output shapes of the governance API."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance import keys
from governance.models import Attestation, AuditEvent, SignedTreeHead, SigningKey
from governance.tree_heads import LOG_ID, timestamp_ms


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq", "occurred_at", "actor_id", "actor_name", "action", "object_type", "object_id", "object_repr",
            "asset_id", "changes", "data", "request_id", "ip_address", "leaf_hash",
        ]
        read_only_fields = fields


class SignedTreeHeadSerializer(serializers.ModelSerializer):
    log = serializers.SerializerMethodField()
    key_id = serializers.CharField(source="key.key_id", read_only=True)
    timestamp_ms = serializers.SerializerMethodField()

    class Meta:
        model = SignedTreeHead
        fields = ["id", "log", "tree_size", "root_hash", "signed_at", "timestamp_ms", "key_id", "signature"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_log(self, head: SignedTreeHead) -> str:
        return LOG_ID

    @extend_schema_field(serializers.IntegerField())
    def get_timestamp_ms(self, head: SignedTreeHead) -> int:
        return timestamp_ms(head.signed_at)


class SigningKeySerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    public_key_pem = serializers.SerializerMethodField()

    class Meta:
        model = SigningKey
        fields = ["key_id", "algorithm", "purpose", "status", "public_key_pem", "created_at", "rotated_at", "revoked_at",
                  "revocation_reason"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_public_key_pem(self, key: SigningKey) -> str:
        return keys.public_key_pem(key)


class AttestationSerializer(serializers.ModelSerializer):
    key_id = serializers.CharField(source="key.key_id", read_only=True)

    class Meta:
        model = Attestation
        fields = ["id", "version_id", "representation_id", "predicate_type", "payload_sha256", "key_id", "created_at",
                  "envelope"]
        read_only_fields = fields


class InclusionProofSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    leaf_hash = serializers.CharField()
    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField()
    proof = serializers.ListField(child=serializers.CharField())
    tree_head = SignedTreeHeadSerializer(allow_null=True)


class ConsistencyProofSerializer(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    first_root = serializers.CharField()
    second_root = serializers.CharField()
    proof = serializers.ListField(child=serializers.CharField())
