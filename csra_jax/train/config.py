"""Old home of the config schema, kept so config files written against it still load.

The schema lives in :mod:`csra_jax.config` (serving reads it too, so it is not a
training module); new config files import from there.
"""

from csra_jax.config import (DTYPES, INIT_SOURCES, MODES, SCHEDULES, base_config,  # noqa: F401
                             paper_config, sibling_config, validate_config)
