import sys

from tidegate.cli import main

sys.exit(main(["text", "serve", *sys.argv[1:]]))
