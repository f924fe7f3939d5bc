# ---------------------------------------------------------------------------
# Sink configuration: non-secret keys as S3SINK_* environment variables,
# secrets as ECS `secrets` (SSM / Secrets Manager), never in plain environment.
# The image's /etc/s3sink/config.json only names the connector; every setting
# below overrides or completes it (S3SINK_ + key upper-cased, '.' -> '_').
# ---------------------------------------------------------------------------

locals {
  sink_config = merge(
    {
      "name"              = var.name
      "topics"            = join(",", var.topics)
      "topics.dir"        = var.topics_dir
      "s3.region"         = local.region
      "format.class"      = var.format
      "partitioner.class" = var.partitioner
      "s3.ssea.name"      = "aws:kms"
      "s3.sse.kms.key.id" = local.kms_key_arn
      "http.listen"       = "0.0.0.0:${var.http_port}"
    },
    # With a key prefix the sink is pointed at s3://bucket/prefix.
    var.key_prefix == "" ? { "s3.bucket.name" = local.bucket_name } : { "storage.url" = "s3://${local.bucket_name}/${var.key_prefix}" },
    contains(["time", "field_time"], var.partitioner) ? { "path.format" = var.path_format } : {},
    contains(["field", "field_time"], var.partitioner) ? { "partition.field.name" = join(",", var.partition_field_names) } : {},
    var.kafka_bootstrap_servers == null ? {} : { "bootstrap.servers" = var.kafka_bootstrap_servers },
    var.sink_config,
  )

  container_environment = [
    for key, value in local.sink_config : {
      name  = "S3SINK_${upper(replace(key, ".", "_"))}"
      value = value
    }
  ]

  container_secrets = [
    for key, arn in var.sink_secrets : {
      name      = "S3SINK_${upper(replace(key, ".", "_"))}"
      valueFrom = arn
    }
  ]

  container_name = "s3sink"
  # The image's user (see Dockerfile); repeated so a different image cannot run as root.
  container_user = "10001:10001"

  container_definition = {
    name                   = local.container_name
    image                  = var.container_image
    essential              = true
    user                   = local.container_user
    readonlyRootFilesystem = true
    command                = ["run", "-c", "/etc/s3sink/config.json"]
    environment            = local.container_environment
    secrets                = local.container_secrets
    stopTimeout            = var.stop_timeout
    portMappings = [
      { name = "http", containerPort = var.http_port, protocol = "tcp" },
    ]
    healthCheck = {
      command     = ["CMD", "python", "/opt/s3sink/healthcheck.py"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }
    linuxParameters = {
      # tini as PID 1 forwards SIGTERM and reaps children.
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    mountPoints = [
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
    ]
    ulimits = [
      { name = "nofile", softLimit = 65536, hardLimit = 65536 },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = local.log_group_name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = "s3sink"
      }
    }
  }

  # Valid Fargate CPU/memory combinations.
  fargate_memory = {
    "256"   = { min = 512, max = 2048, step = 512 }
    "512"   = { min = 1024, max = 4096, step = 1024 }
    "1024"  = { min = 2048, max = 8192, step = 1024 }
    "2048"  = { min = 4096, max = 16384, step = 1024 }
    "4096"  = { min = 8192, max = 30720, step = 1024 }
    "8192"  = { min = 16384, max = 61440, step = 4096 }
    "16384" = { min = 32768, max = 122880, step = 8192 }
  }
  fargate_memory_range = local.fargate_memory[tostring(var.task_cpu)]
}

resource "aws_cloudwatch_log_group" "sink" {
  #checkov:skip=CKV_AWS_338:Operational logs of a stateless consumer; retention is the variable log_retention_days (default 90). The audit trail is the commit log in S3.
  count = var.create_ecs_service ? 1 : 0

  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn

  tags = local.tags
}

resource "aws_ecs_cluster" "this" {
  count = var.create_ecs_service && var.ecs_cluster_arn == null ? 1 : 0

  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_ecs_task_definition" "sink" {
  count = var.create_ecs_service ? 1 : 0

  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.task_cpu)
  memory                   = tostring(var.task_memory)
  task_role_arn            = aws_iam_role.task[0].arn
  execution_role_arn       = aws_iam_role.execution[0].arn
  container_definitions    = jsonencode([local.container_definition])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Fargate task storage for /tmp; the root filesystem is read-only.
  volume {
    name = "tmp"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.container_image != null
      error_message = "create_ecs_service needs container_image (an s3sink image with a tag or digest)."
    }
    precondition {
      condition     = var.kafka_bootstrap_servers != null
      error_message = "create_ecs_service needs kafka_bootstrap_servers."
    }
    precondition {
      condition = (
        var.task_memory >= local.fargate_memory_range.min &&
        var.task_memory <= local.fargate_memory_range.max &&
        (var.task_memory - local.fargate_memory_range.min) % local.fargate_memory_range.step == 0
      )
      error_message = "task_memory ${var.task_memory} is not valid with task_cpu ${var.task_cpu} on Fargate: use ${local.fargate_memory_range.min} to ${local.fargate_memory_range.max} MiB in steps of ${local.fargate_memory_range.step}."
    }
  }
}

data "aws_vpc" "this" {
  count = var.create_ecs_service && var.kafka_cidr_blocks == null && var.vpc_id != null ? 1 : 0

  id = var.vpc_id
}

resource "aws_security_group" "sink" {
  count = var.create_ecs_service ? 1 : 0

  name        = "${var.name}-sink"
  description = "s3sink ${var.name}: egress to Kafka and HTTPS only, no ingress"
  vpc_id      = var.vpc_id

  egress {
    description = "Kafka brokers"
    protocol    = "tcp"
    from_port   = var.kafka_port_range.from
    to_port     = var.kafka_port_range.to
    cidr_blocks = coalesce(var.kafka_cidr_blocks, try([data.aws_vpc.this[0].cidr_block], []))
  }

  egress {
    description = "HTTPS to S3, ECR, CloudWatch Logs, SSM, KMS and STS"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = var.https_egress_cidr_blocks
  }

  tags = merge(local.tags, { "Name" = "${var.name}-sink" })

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = var.vpc_id != null && length(var.subnet_ids) > 0
      error_message = "create_ecs_service needs vpc_id and subnet_ids."
    }
  }
}

resource "aws_ecs_service" "sink" {
  count = var.create_ecs_service ? 1 : 0

  name             = var.name
  cluster          = coalesce(var.ecs_cluster_arn, try(aws_ecs_cluster.this[0].arn, null))
  task_definition  = aws_ecs_task_definition.sink[0].arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  # Rolling update: new tasks join the consumer group before old ones leave;
  # the commit protocol keeps exactly-once across the rebalances.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.sink[0].id]
    assign_public_ip = var.assign_public_ip
  }

  tags = local.tags

  depends_on = [
    aws_iam_role_policy_attachment.task_sink,
    aws_iam_role_policy_attachment.execution_managed,
    aws_iam_role_policy.execution_secrets,
    aws_cloudwatch_log_group.sink,
  ]
}
