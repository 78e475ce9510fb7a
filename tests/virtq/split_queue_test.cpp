// placeholder replaced below
#include "virtq/virtqueue.hpp"
#include <gtest/gtest.h>
TEST(SplitQueue, Builds) { vireo::virtq::Virtqueue q; EXPECT_FALSE(q.ready()); }
