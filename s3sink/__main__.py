from s3sink.cli import main

raise SystemExit(main())
