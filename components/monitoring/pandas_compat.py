"""Evidently 0.7.23 imports pandas.core.dtypes.common.infer_dtype_from_object at import time, a
private helper pandas 3 removed; nothing the project calls in Evidently uses it (only a legacy
column-type test does). Importing this module first puts back an equivalent."""
import pandas.core.dtypes.common as _common

if not hasattr(_common, "infer_dtype_from_object"):
    _common.infer_dtype_from_object = lambda dtype: _common.pandas_dtype(dtype).type
