"""`python -m videosalmonn ...` = the `videosalmonn` command (also under torchrun / accelerate launch)."""

import sys

from videosalmonn.cli import main

sys.exit(main())
