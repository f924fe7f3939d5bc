variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "container_image" {
  description = "s3sink image built from this repository's Dockerfile and pushed to a registry the tasks can pull from, with a tag or digest."
  type        = string
  nullable    = false
}

variable "vpc_id" {
  description = "VPC of the Kafka cluster."
  type        = string
  nullable    = false
}

variable "subnet_ids" {
  description = "Private subnets for the sink's tasks."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "kafka_bootstrap_servers" {
  description = "Kafka bootstrap servers, host:port[,host:port...]."
  type        = string
  nullable    = false
}

variable "kafka_sasl_password_parameter_arn" {
  description = "Optional: ARN of an SSM SecureString parameter with the SASL/SCRAM password of the sink's Kafka user. Null for a cluster without SASL."
  type        = string
  default     = null
}
