"""s3sink: a Kafka-to-S3 archival sink and data-lake writer with exactly-once commit markers."""

__version__ = "0.1.0"
