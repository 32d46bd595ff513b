"""factory_boy factories shared by the whole suite. Catalog rows made here skip the services on purpose:
tests of a service build their preconditions quickly, then call the service under test."""
from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from catalog.models import LOD, Asset, AssetVersion, Capture, Collection, Representation, StoredFile, Variant
from governance.models import Licence


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class LicenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Licence

    spdx_id = "CC0-1.0"
    name = "Creative Commons Zero v1.0 Universal"


class CollectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Collection

    slug = factory.Sequence(lambda n: f"collection-{n}")
    name = factory.Sequence(lambda n: f"Collection {n}")
    owner = factory.SubFactory(UserFactory)


class AssetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Asset

    collection = factory.SubFactory(CollectionFactory)
    slug = factory.Sequence(lambda n: f"asset-{n}")
    name = factory.Sequence(lambda n: f"Asset {n}")
    category = "furniture/chair"
    owner = factory.SubFactory(UserFactory)
    licence = factory.SubFactory(LicenceFactory)


class AssetVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AssetVersion

    asset = factory.SubFactory(AssetFactory)
    number = factory.Sequence(lambda n: n + 1)
    created_by = factory.SubFactory(UserFactory)


class VariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variant

    version = factory.SubFactory(AssetVersionFactory)
    name = "default"


class LODFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LOD

    variant = factory.SubFactory(VariantFactory)
    level = 0


class StoredFileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StoredFile

    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    size = 1024
    media_type = "model/gltf-binary"
    storage_name = factory.LazyAttribute(lambda f: f"blobs/{f.sha256[:2]}/{f.sha256[2:4]}/{f.sha256}")


class RepresentationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Representation

    lod = factory.SubFactory(LODFactory)
    file = factory.SubFactory(StoredFileFactory)
    filename = factory.Sequence(lambda n: f"model-{n}.glb")
    format = "glb"


class CaptureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Capture

    collection = factory.SubFactory(CollectionFactory)
    name = factory.Sequence(lambda n: f"Shoot {n}")
    created_by = factory.SubFactory(UserFactory)
