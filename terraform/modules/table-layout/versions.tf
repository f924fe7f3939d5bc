terraform {
  # Pure expressions only: this module declares no provider, so it can be
  # evaluated offline (`terraform console`) by the tests that keep the Glue
  # table in step with `s3sink ddl`.
  required_version = ">= 1.5.0"
}
