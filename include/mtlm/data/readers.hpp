// @brief All corpus readers: ATIS/SNIPS folders (atis.hpp), CoNLL column files (conll.hpp) and
// GLUE-style TSV files (tsv.hpp). Each reports malformed input as FormatError(file, line, what).
#pragma once

#include "mtlm/data/atis.hpp"
#include "mtlm/data/conll.hpp"
#include "mtlm/data/example.hpp"
#include "mtlm/data/tsv.hpp"
