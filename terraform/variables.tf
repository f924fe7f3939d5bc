# ---------------------------------------------------------------------------
# Naming
# ---------------------------------------------------------------------------

variable "name" {
  description = "Name of this sink deployment; prefixes every resource and is the sink's `name` (consumer group s3sink-<name>)."
  type        = string
  default     = "s3sink"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 32 lower-case letters, digits or '-', starting with a letter and not ending with '-'."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
  nullable    = false
}

# ---------------------------------------------------------------------------
# Bucket and encryption
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the bucket to create (s3.bucket.name). Default: <name>-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3 to 63 lower-case letters, digits, '.' or '-'."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the bucket with its archive in it. Keep false in production."
  type        = bool
  default     = false
  nullable    = false
}

variable "kms_key_arn" {
  description = "ARN of an existing KMS key for SSE-KMS on the bucket, the Athena results and the log group. Null creates a key with rotation enabled. An existing key's policy must allow the CloudWatch Logs service (logs.<region>.amazonaws.com) to use it for the log group."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period before a created KMS key is deleted after `terraform destroy`."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be between 7 and 30."
  }
}

variable "versioning_enabled" {
  description = <<-EOT
    Enable S3 versioning. Recommended (default true) for an archive: an accidental or malicious
    delete or overwrite of a data file can be undone. The sink itself never overwrites a data file
    with different bytes and only deletes its own staging files, so versioning costs little: the
    lifecycle rules expire noncurrent versions after noncurrent_version_expiration_days and remove
    expired delete markers. Set false only if another mechanism (replication, backups) protects the data.
  EOT
  type        = bool
  default     = true
  nullable    = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions are deleted (only with versioning_enabled)."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "key_prefix" {
  description = "Optional key prefix for everything the sink writes (storage.url s3://<bucket>/<key_prefix>), without leading or trailing slash. Empty: data under <topics_dir>/ and state under _s3sink/ at the bucket root."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.key_prefix == "" || can(regex("^[^/](.*[^/])?$", var.key_prefix))
    error_message = "key_prefix must be empty or have no leading or trailing slash, e.g. \"archive/prod\"."
  }
}

variable "topics_dir" {
  description = "The sink's topics.dir: folder (under key_prefix) holding the data files."
  type        = string
  default     = "topics"
  nullable    = false

  validation {
    condition     = can(regex("^[^/](.*[^/])?$", var.topics_dir)) && !startswith(var.topics_dir, "_s3sink") && !startswith(var.topics_dir, "_athena")
    error_message = "topics_dir must have no leading or trailing slash and must not start with _s3sink or _athena (reserved prefixes)."
  }
}

# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------

variable "archive_transition_days" {
  description = "Days after which data files under <topics_dir>/ move to archive_storage_class. Null disables the transition."
  type        = number
  default     = 30

  validation {
    condition     = var.archive_transition_days == null || try(var.archive_transition_days >= 0, false)
    error_message = "archive_transition_days must be null or a number of days >= 0."
  }
}

variable "archive_storage_class" {
  description = "Storage class for data files after archive_transition_days. GLACIER_IR (default), STANDARD_IA, ONEZONE_IA and INTELLIGENT_TIERING stay queryable by Athena; GLACIER and DEEP_ARCHIVE objects must be restored before Athena, Spark or `s3sink restore` can read them."
  type        = string
  default     = "GLACIER_IR"
  nullable    = false

  validation {
    condition     = contains(["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"], var.archive_storage_class)
    error_message = "archive_storage_class must be one of STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR, GLACIER, DEEP_ARCHIVE."
  }
}

variable "data_expiration_days" {
  description = "Days after which data files under <topics_dir>/ are deleted. Null (default) keeps the archive forever. The sink's commit log under _s3sink/log/ is kept either way."
  type        = number
  default     = null

  validation {
    condition     = var.data_expiration_days == null || try(var.data_expiration_days >= 1, false)
    error_message = "data_expiration_days must be null or at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which incomplete multipart uploads anywhere in the bucket are aborted (the sink also aborts its own stale uploads under _s3sink/staging/ on takeover)."
  type        = number
  default     = 7
  nullable    = false

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1
    error_message = "abort_incomplete_multipart_upload_days must be at least 1."
  }
}

variable "staging_expiration_days" {
  description = "Days after which objects under _s3sink/staging/ are deleted. Staging files are published (copied to their final key) within seconds of a commit, so a file older than a few days is an orphan of a crashed or fenced writer."
  type        = number
  default     = 7
  nullable    = false

  validation {
    condition     = var.staging_expiration_days >= 1
    error_message = "staging_expiration_days must be at least 1."
  }
}

# ---------------------------------------------------------------------------
# What the sink writes (must match the sink's configuration)
# ---------------------------------------------------------------------------

variable "topics" {
  description = "Kafka topics the sink consumes (topics)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.topics) > 0 && alltrue([for t in var.topics : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "topics must list at least one valid Kafka topic name (letters, digits, '.', '_', '-')."
  }
}

variable "format" {
  description = "Output format (format.class): parquet, json or avro."
  type        = string
  default     = "parquet"
  nullable    = false

  validation {
    condition     = contains(["parquet", "json", "avro"], var.format)
    error_message = "format must be parquet, json or avro."
  }
}

variable "partitioner" {
  description = "Partitioner (partitioner.class): default (partition=<n>), field (<field>=<value>), time (path_format), hourly, daily, or field_time (fields, then path_format)."
  type        = string
  default     = "default"
  nullable    = false

  validation {
    condition     = contains(["default", "field", "time", "hourly", "daily", "field_time"], var.partitioner)
    error_message = "partitioner must be one of default, field, time, hourly, daily, field_time."
  }
}

variable "path_format" {
  description = "path.format for the time and field_time partitioners, in Joda-Time syntax as in the Confluent S3 sink, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH or 'dt'=YYYY-MM-dd. Ignored by the other partitioners (hourly and daily have fixed formats)."
  type        = string
  default     = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
  nullable    = false

  validation {
    condition = alltrue([
      for segment in split("/", trim(var.path_format, "/")) :
      can(regex("^'[A-Za-z_][A-Za-z0-9_]*'=[yYMdHm][yYMdHm_.:-]*$", segment)) && try(alltrue([
        # Each run of one letter is a supported field width (MMM, a month name, is not).
        for run in regexall("y+|Y+|M+|d+|H+|m+", regex("^'[^']*'=(.*)$", segment)[0]) :
        contains(["yyyy", "YYYY", "yy", "YY", "MM", "M", "dd", "d", "HH", "H", "mm", "m"], run)
      ]), false)
    ])
    error_message = "path_format must be '/'-separated segments 'name'=PATTERN, PATTERN made of YYYY, yyyy, YY, yy, MM, M, dd, d, HH, H, mm, m joined by nothing or one of - _ . : (e.g. 'dt'=YYYY-MM-dd/'hour'=HH)."
  }
}

variable "partition_field_names" {
  description = "partition.field.name for the field and field_time partitioners: top-level record fields, in path order."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for f in var.partition_field_names : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", f))])
    error_message = "partition_field_names must be field names of letters, digits and underscores."
  }
}

variable "partition_field_values" {
  description = "Known values of partition fields, projected as enum. Fields not listed are projected as injected: Athena then requires a WHERE <field> = '...' (or IN) in every query."
  type        = map(list(string))
  default     = {}
  nullable    = false
}

variable "kafka_partition_count" {
  description = "Default partitioner: projection covers partition=0 .. partition=N-1. Set it to at least the largest partition count of the topics (a larger value only costs empty listings)."
  type        = number
  default     = 100
  nullable    = false

  validation {
    condition     = var.kafka_partition_count >= 1 && floor(var.kafka_partition_count) == var.kafka_partition_count
    error_message = "kafka_partition_count must be a whole number of at least 1."
  }
}

variable "projection_start_year" {
  description = "First year projected for time partition columns."
  type        = number
  default     = 2020
  nullable    = false

  validation {
    condition     = var.projection_start_year >= 1970 && var.projection_start_year <= 9999
    error_message = "projection_start_year must be between 1970 and 9999."
  }
}

variable "projection_end_year" {
  description = "Last year projected for integer year columns (date-projected columns end at NOW)."
  type        = number
  default     = 2050
  nullable    = false

  validation {
    condition     = var.projection_end_year >= 1970 && var.projection_end_year <= 9999
    error_message = "projection_end_year must be between 1970 and 9999."
  }
}

# ---------------------------------------------------------------------------
# Query side: Glue and Athena
# ---------------------------------------------------------------------------

variable "tables" {
  description = <<-EOT
    Glue tables to create, keyed by topic (each key must be in topics). columns are the record
    fields (name, Hive/Athena type, optional comment); table_name defaults to the topic with
    characters other than [a-z0-9_] replaced by '_'; avro_schema_literal is required for
    format avro; kafka_partition_count overrides the module-wide value for this topic.
  EOT
  type = map(object({
    columns = list(object({
      name    = string
      type    = string
      comment = optional(string)
    }))
    table_name            = optional(string)
    avro_schema_literal   = optional(string)
    kafka_partition_count = optional(number)
  }))
  default  = {}
  nullable = false

  validation {
    condition = alltrue(flatten([
      for topic, t in var.tables : [
        length(t.columns) > 0,
        [for c in t.columns : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", c.name)) && length(trimspace(c.type)) > 0],
        t.table_name == null || can(regex("^[a-z_][a-z0-9_]{0,254}$", coalesce(t.table_name, "x"))),
      ]
    ]))
    error_message = "Each table needs at least one column; column names must be letters, digits and '_', types non-empty, and table_name (if set) lower-case letters, digits and '_'."
  }

  # Glue/Athena read Hive DDL types, as `s3sink ddl --engine athena` prints them; Trino's
  # spellings (varchar, real, array(...), row(...), timestamp(3)) or a typo fail only at query time.
  validation {
    condition = alltrue(flatten([
      for topic, t in var.tables : [
        for c in t.columns : can(regex("(?i)^(boolean|tinyint|smallint|int|integer|bigint|float|double|string|binary|date|timestamp|decimal\\([0-9]+, ?[0-9]+\\)|char\\([0-9]+\\)|varchar\\([0-9]+\\)|array<.+>|map<.+>|struct<.+>)$", trimspace(c.type)))
      ]
    ]))
    error_message = "Column types must be Hive DDL types as Athena reads them: boolean, tinyint, smallint, int (integer), bigint, float, double, decimal(p,s), char(n), varchar(n), string, binary, date, timestamp, array<...>, map<...> or struct<...> (the types s3sink ddl --engine athena prints)."
  }
}

variable "glue_database_name" {
  description = "Name of the Glue database to create. Default: <name> with '-' replaced by '_'."
  type        = string
  default     = null

  validation {
    condition     = var.glue_database_name == null || can(regex("^[a-z_][a-z0-9_]{0,254}$", coalesce(var.glue_database_name, "x")))
    error_message = "glue_database_name must be lower-case letters, digits and '_'."
  }
}

variable "athena_bytes_scanned_cutoff_per_query" {
  description = "Cancel Athena queries of the workgroup that scan more than this many bytes (null: no limit; minimum 10 MB)."
  type        = number
  default     = 1099511627776
  nullable    = true

  validation {
    condition     = var.athena_bytes_scanned_cutoff_per_query == null || try(var.athena_bytes_scanned_cutoff_per_query >= 10485760, false)
    error_message = "athena_bytes_scanned_cutoff_per_query must be null or at least 10485760 (10 MB)."
  }
}

variable "athena_results_expiration_days" {
  description = "Days after which Athena query results under _athena/results/ in the bucket are deleted."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.athena_results_expiration_days >= 1
    error_message = "athena_results_expiration_days must be at least 1."
  }
}

# ---------------------------------------------------------------------------
# ECS Fargate service
# ---------------------------------------------------------------------------

variable "create_ecs_service" {
  description = "Create the ECS Fargate cluster, task definition and service. False keeps only the bucket, IAM policy, Glue and Athena (e.g. to run the sink on EKS with sink_policy_arn)."
  type        = bool
  default     = true
  nullable    = false
}

variable "ecs_cluster_arn" {
  description = "Existing ECS cluster to run the service in. Null creates a cluster with Container Insights."
  type        = string
  default     = null

  validation {
    condition     = var.ecs_cluster_arn == null || can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/.+$", var.ecs_cluster_arn))
    error_message = "ecs_cluster_arn must be an ECS cluster ARN."
  }
}

variable "container_image" {
  description = "s3sink container image with a tag or digest, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/s3sink:0.1.0 or ...@sha256:<digest>. Required with create_ecs_service."
  type        = string
  default     = null

  validation {
    condition     = var.container_image == null || can(regex("^[^\\s:@]+(:[0-9]+)?[^\\s:@]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", coalesce(var.container_image, "x:y")))
    error_message = "container_image must name a tag or a digest (image:tag or image@sha256:...)."
  }
}

variable "vpc_id" {
  description = "VPC of the service's subnets. Required with create_ecs_service."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", coalesce(var.vpc_id, "x")))
    error_message = "vpc_id must be a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets for the tasks (private subnets with a NAT gateway or VPC endpoints for S3, ECR, CloudWatch Logs and SSM). Required with create_ecs_service."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "subnet_ids must be subnet ids such as subnet-0123456789abcdef0."
  }
}

variable "assign_public_ip" {
  description = "Give the tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
  nullable    = false
}

variable "desired_count" {
  description = "Number of sink tasks. They share the consumer group; more tasks than partitions leave some idle."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.desired_count >= 0 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number >= 0."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units (256, 512, 1024, 2048, 4096, 8192, 16384)."
  type        = number
  default     = 1024
  nullable    = false

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB; must be a valid combination with task_cpu. The sink's buffer.memory.bytes defaults to half of it."
  type        = number
  default     = 2048
  nullable    = false

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880
    error_message = "task_memory must be between 512 and 122880 MiB."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the tasks: X86_64 or ARM64 (the image must be built for it)."
  type        = string
  default     = "X86_64"
  nullable    = false

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "http_port" {
  description = "Port of the sink's HTTP listener (http.listen) for /healthz, /readyz and /metrics."
  type        = number
  default     = 8080
  nullable    = false

  validation {
    condition     = var.http_port >= 1024 && var.http_port <= 65535
    error_message = "http_port must be between 1024 and 65535 (the container runs as a non-root user)."
  }
}

variable "stop_timeout" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL (Fargate maximum 120). Keep it above the sink's shutdown.timeout.ms."
  type        = number
  default     = 120
  nullable    = false

  validation {
    condition     = var.stop_timeout >= 2 && var.stop_timeout <= 120
    error_message = "stop_timeout must be between 2 and 120 seconds."
  }
}

variable "log_retention_days" {
  description = "Retention of the sink's CloudWatch log group."
  type        = number
  default     = 90
  nullable    = false

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "kafka_bootstrap_servers" {
  description = "Kafka bootstrap servers (bootstrap.servers), host:port[,host:port...]. Required with create_ecs_service."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_bootstrap_servers == null || can(regex("^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$", coalesce(var.kafka_bootstrap_servers, "x:1")))
    error_message = "kafka_bootstrap_servers must be host:port[,host:port...]."
  }
}

variable "kafka_cidr_blocks" {
  description = "CIDR blocks of the Kafka brokers the tasks may reach. Null: the VPC's CIDR block."
  type        = list(string)
  default     = null

  validation {
    condition     = var.kafka_cidr_blocks == null || alltrue([for c in coalesce(var.kafka_cidr_blocks, []) : can(cidrhost(c, 0))])
    error_message = "kafka_cidr_blocks must be valid IPv4 CIDR blocks."
  }
}

variable "kafka_port_range" {
  description = "TCP port range of the Kafka brokers (MSK: 9092 plaintext, 9094 TLS, 9096 SASL/SCRAM, 9098 IAM)."
  type = object({
    from = number
    to   = number
  })
  default  = { from = 9092, to = 9098 }
  nullable = false

  validation {
    condition     = var.kafka_port_range.from >= 1 && var.kafka_port_range.to <= 65535 && var.kafka_port_range.from <= var.kafka_port_range.to
    error_message = "kafka_port_range must satisfy 1 <= from <= to <= 65535."
  }
}

variable "https_egress_cidr_blocks" {
  description = "CIDR blocks the tasks may reach on port 443 (S3, ECR, CloudWatch Logs, SSM, KMS, STS). Narrow it when VPC endpoints serve these."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  nullable    = false

  validation {
    condition     = alltrue([for c in var.https_egress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "https_egress_cidr_blocks must be valid IPv4 CIDR blocks."
  }
}

variable "sink_config" {
  description = <<-EOT
    Further non-secret sink settings, passed as S3SINK_* environment variables (key upper-cased,
    '.' -> '_'), e.g. { "flush.size" = "100000", "rotate.interval.ms" = "600000",
    "consumer.security.protocol" = "SASL_SSL" }. Keys this module derives from its own variables
    (bucket, topics, format, partitioner, path format, encryption) are refused here, and so is
    anything that looks like a secret: pass those with sink_secrets.
  EOT
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for k in keys(var.sink_config) : !can(regex("(?i)(password|secret|sasl\\.jaas|ssl\\.key\\.pem|credential|access\\.key)", k))
    ])
    error_message = "sink_config must not hold secrets (keys containing password, secret, credential, access.key, sasl.jaas or ssl.key.pem): pass them with sink_secrets."
  }
  validation {
    condition = length(setintersection(keys(var.sink_config), [
      "name", "topics", "topics.regex", "topics.dir", "s3.bucket.name", "storage.url", "s3.region",
      "format.class", "partitioner.class", "path.format", "partition.field.name",
      "s3.ssea.name", "s3.sse.kms.key.id", "bootstrap.servers", "http.listen",
    ])) == 0
    error_message = "sink_config must not set keys derived from module variables (name, topics, topics.dir, s3.bucket.name, storage.url, s3.region, format.class, partitioner.class, path.format, partition.field.name, s3.ssea.name, s3.sse.kms.key.id, bootstrap.servers, http.listen): set the matching variable instead."
  }
}

variable "sink_secrets" {
  description = "Secret sink settings: key (e.g. consumer.sasl.password) => ARN of an SSM SecureString parameter or a Secrets Manager secret. ECS injects them as S3SINK_* environment variables at start; they never appear in the task definition."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for arn in values(var.sink_secrets) : can(regex("^arn:aws[a-z-]*:(ssm:[a-z0-9-]+:[0-9]{12}:parameter/|secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:).+$", arn))])
    error_message = "sink_secrets values must be SSM parameter ARNs (arn:aws:ssm:...:parameter/...) or Secrets Manager secret ARNs."
  }
}

variable "secrets_kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the sink_secrets (the execution role may decrypt with them). Not needed for the AWS-managed keys."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for arn in var.secrets_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", arn))])
    error_message = "secrets_kms_key_arns must be KMS key ARNs."
  }
}

variable "additional_task_role_policy_arns" {
  description = "Further IAM policies for the sink's task role, e.g. one that grants kafka-cluster:* actions for MSK IAM authentication."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for arn in var.additional_task_role_policy_arns : can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", arn))])
    error_message = "additional_task_role_policy_arns must be IAM policy ARNs."
  }
}
