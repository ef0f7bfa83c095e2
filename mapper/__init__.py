"""The mapper: map spaces, constraints, search strategies and Pareto fronts.

Every cost comes from the simulator (`einsim.simulator.evaluate_batch`); the mapper only
generates candidates and ranks what the simulator says about them.
"""

from .constraints import Constraints, constraints_from_dict, load_constraints
from .search import SearchResult, pareto_mask, search
from .space import MapSpace, Template, build_space, schedule_stages
from .strategies import STRATEGIES

__all__ = [
    "STRATEGIES",
    "Constraints",
    "MapSpace",
    "SearchResult",
    "Template",
    "build_space",
    "constraints_from_dict",
    "load_constraints",
    "pareto_mask",
    "schedule_stages",
    "search",
]
