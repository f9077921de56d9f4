/* placeholder, filled below */
#include "registry-internal.h"
