import sys

from nesso.cli import main

sys.exit(main())
