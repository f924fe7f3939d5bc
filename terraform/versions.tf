terraform {
  # 1.5: strcontains(), optional() object attributes, output preconditions.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}
