"""The mapper: map spaces, constraints, search strategies and Pareto fronts.

Every cost comes from the simulator (`einsim.simulator.evaluate_batch`); the mapper only
generates candidates and ranks what the simulator says about them.
"""

from .constraints import Constraints, constraints_from_dict, load_constraints
from .objectives import OBJECTIVES, objective_values, pareto_mask
from .result import SearchResult
from .search import search, strategies_of
from .space import MapSpace, Template, build_space, schedule_stages
from .strategies import STRATEGIES

__all__ = [
    "OBJECTIVES",
    "STRATEGIES",
    "Constraints",
    "MapSpace",
    "SearchResult",
    "Template",
    "build_space",
    "constraints_from_dict",
    "load_constraints",
    "objective_values",
    "pareto_mask",
    "schedule_stages",
    "search",
    "strategies_of",
]
