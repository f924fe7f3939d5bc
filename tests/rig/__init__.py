"""The test rig: helpers on top of the real Kafka broker and S3 endpoints of ``conftest.py``.

Fixtures (``tests/conftest.py``): ``kafka_bootstrap``, ``kafka_broker``, ``s3_endpoint``,
``s3_client``, ``s3_bucket``, ``minio_endpoint``, ``minio_client``, ``minio_bucket``.
Helpers: :mod:`tests.rig.kafka` (topics, produce with delivery reports, consume, offsets) and
:mod:`tests.rig.s3` (endpoints, boto3 clients, buckets).
"""
