"""R-Zero (arXiv 2508.05004): placeholder until the loop lands."""
import sys
print("rzero: the R-Zero loop is not built yet; this run only checked the environment.")
sys.exit(0)
