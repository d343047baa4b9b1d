"""An inference handler in the numpy form: every input doubled (BYTES upper-cased,
BOOL negated), returned as ``<input>_out`` with the input's datatype."""

import numpy as np


def handler(context, event):
    outputs = {}
    for name, array in event.inputs.items():
        if array.dtype == object:
            doubled = np.array([x.upper() for x in array.ravel()], dtype=object)
            outputs[name + "_out"] = doubled.reshape(array.shape)
        elif array.dtype == bool:
            outputs[name + "_out"] = ~array
        else:
            outputs[name + "_out"] = array * 2
    return outputs
