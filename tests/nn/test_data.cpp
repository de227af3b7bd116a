// SPDX-License-Identifier: MIT
// Datasets: CSV reading (with and without header) and its errors, stratified splits,
// standardisation fitted on the training split, seeded mini-batches.
#include <filesystem>
#include <fstream>
#include <set>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {
fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("tapegrad_data_{}", ::getpid());
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

Dataset toy(std::int64_t per_class, std::int64_t classes) {
  std::vector<double> f;
  std::vector<std::int64_t> l;
  for (std::int64_t c = 0; c < classes; ++c)
    for (std::int64_t i = 0; i < per_class; ++i) {
      f.push_back(static_cast<double>(c * 1000 + i));
      f.push_back(static_cast<double>(i % 7));
      l.push_back(c);
    }
  const std::int64_t n = per_class * classes;
  std::vector<std::string> names;
  for (std::int64_t c = 0; c < classes; ++c) names.push_back(fmt::format("c{}", c));
  return {from_vector(f, Shape{n, 2}, kFloat64), from_vector(l, Shape{n}), names};
}
}  // namespace

TEST_CASE("read_csv: header with class names, or none", "[nn][data]") {
  const auto p = write_temp("a.csv", "3,2,setosa,versicolor\n5.1,3.5,0\n4.9,3.0,1\n\n6.0, 2.5 ,1\r\n");
  Dataset d = read_csv(p.string(), kFloat64);
  REQUIRE(d.size() == 3);
  REQUIRE(d.num_features() == 2);
  REQUIRE(d.class_names == std::vector<std::string>{"setosa", "versicolor"});
  REQUIRE_ALLCLOSE(d.features, tensor({{5.1, 3.5}, {4.9, 3.0}, {6.0, 2.5}}, kFloat64), 0, 0);
  REQUIRE(d.labels.to_vector() == std::vector<double>{0, 1, 1});
  const auto q = write_temp("b.csv", "0,1,2,3\n4,5,6,1\n");
  Dataset e = read_csv(q.string());
  REQUIRE(e.num_features() == 3);
  REQUIRE(e.class_names == std::vector<std::string>{"0", "1", "2", "3"});
  REQUIRE(e.features.dtype() == kFloat32);
}

TEST_CASE("read_csv: errors name the file and line", "[nn][data]") {
  auto p = write_temp("c.csv", "2,2,a,b\n1,2,0\n1,2\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("c.csv:3") && Contains("2 columns; expected 3"));
  p = write_temp("d.csv", "2,2,a,b\n1,2,0\n1,x2,1\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("d.csv:3") && Contains("column 2 is 'x2'"));
  p = write_temp("e.csv", "2,2,a,b\n1,2,0\n1,2,1.5\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("e.csv:3") && Contains("label '1.5'"));
  p = write_temp("f.csv", "2,2,a,b\n1,2,0\n1,2,2\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("f.csv:3") && Contains("label '2' is not an integer in [0, 2)"));
  p = write_temp("g.csv", "3,2,a,b\n1,2,0\n1,2,1\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("declares 3 samples but the file has 2"));
  p = write_temp("h.csv", "2,2,a,b\n1,nan,0\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("h.csv:2") && Contains("'nan'"));
  REQUIRE_THROWS_WITH(read_csv("/nonexistent/x.csv"), Contains("cannot open '/nonexistent/x.csv'"));
}

TEST_CASE("stratified_split: disjoint, complete, class-balanced, seeded", "[nn][data]") {
  Dataset d = toy(50, 3);
  DatasetSplit s = stratified_split(d, 0.2, 0.2, 42);
  REQUIRE(s.train.size() == 90);
  REQUIRE(s.validation.size() == 30);
  REQUIRE(s.test.size() == 30);
  std::set<double> seen;
  for (const Dataset* part : {&s.train, &s.validation, &s.test}) {
    std::vector<int> per_class(3);
    const auto f = part->features.to_vector();
    const auto l = part->labels.to_vector();
    for (std::int64_t i = 0; i < part->size(); ++i) {
      seen.insert(f[static_cast<std::size_t>(2 * i)]);
      ++per_class[static_cast<std::size_t>(l[static_cast<std::size_t>(i)])];
      REQUIRE(static_cast<std::int64_t>(f[static_cast<std::size_t>(2 * i)]) / 1000 == static_cast<std::int64_t>(l[static_cast<std::size_t>(i)]));
    }
    REQUIRE(per_class[0] == per_class[1]);
    REQUIRE(per_class[1] == per_class[2]);
  }
  REQUIRE(seen.size() == 150);
  REQUIRE(stratified_split(d, 0.2, 0.2, 42).test.features.to_vector() == s.test.features.to_vector());
  REQUIRE(stratified_split(d, 0.2, 0.2, 43).test.features.to_vector() != s.test.features.to_vector());
  REQUIRE_THROWS_WITH(stratified_split(d, 0.6, 0.5, 1), Contains("sum below 1"));
}

TEST_CASE("Standardizer: fitted on train only, applied to every split", "[nn][data]") {
  Tensor train = tensor({{1.0, 5.0, 3.0}, {3.0, 5.0, 1.0}}, kFloat64);
  Standardizer st;
  st.fit(train);
  REQUIRE(st.mean() == std::vector<double>{2.0, 5.0, 2.0});
  REQUIRE(st.std() == std::vector<double>{1.0, 0.0, 1.0});
  REQUIRE_ALLCLOSE(st.transform(train), tensor({{-1.0, 0.0, 1.0}, {1.0, 0.0, -1.0}}, kFloat64), 0, 0);
  // test data uses the training statistics (constant feature only centred)
  REQUIRE_ALLCLOSE(st.transform(tensor({{4.0, 7.0, 2.0}}, kFloat64)), tensor({{2.0, 2.0, 0.0}}, kFloat64), 0, 0);
  REQUIRE_THROWS_WITH(st.transform(tensor({{1.0, 2.0}}, kFloat64)), Contains("[1, 2]") && Contains("[N, 3]"));
  Standardizer unfitted;
  REQUIRE_THROWS_WITH(unfitted.transform(train), Contains("fit()"));
}

TEST_CASE("BatchIterator: every sample once per epoch, seeded shuffles", "[nn][data]") {
  Dataset d = toy(10, 2);
  BatchIterator it(d, 6, true, 3);
  REQUIRE(it.batches_per_epoch() == 4);
  auto e1 = it.epoch();
  REQUIRE(e1.size() == 4);
  REQUIRE(e1.back().size() == 2);
  std::multiset<double> seen;
  for (const auto& b : e1)
    for (std::int64_t i = 0; i < b.size(); ++i) seen.insert(b.features.at({i, 0}));
  REQUIRE(seen.size() == 20);
  REQUIRE(std::set<double>(seen.begin(), seen.end()).size() == 20);
  auto e2 = it.epoch();
  REQUIRE(e2[0].features.to_vector() != e1[0].features.to_vector());  // reshuffled
  BatchIterator again(d, 6, true, 3);
  REQUIRE(again.epoch()[0].features.to_vector() == e1[0].features.to_vector());
  BatchIterator dropped(d, 6, false, 0, true);
  REQUIRE(dropped.batches_per_epoch() == 3);
  REQUIRE(dropped.epoch()[0].features.at({0, 0}) == 0.0);
  REQUIRE_THROWS_WITH(BatchIterator(d, 0, true, 1), Contains("batch_size = 0"));
}

TEST_CASE("check_finite: names the batch, position and value", "[nn][data]") {
  Tensor x = tensor({{1.0, 2.0}, {3.0, NAN}}, kFloat64);
  REQUIRE_THROWS_WITH(check_finite(x, "batch 7 features"), Contains("batch 7 features: element [1, 1] is nan"));
  x.set({1, 1}, -INFINITY);
  REQUIRE_THROWS_WITH(check_finite(x, "x"), Contains("element [1, 1] is -inf"));
  x.set({1, 1}, 4.0);
  REQUIRE_NOTHROW(check_finite(x, "x"));
}

TEST_CASE("read_csv: labels and header counts that cannot be cast are errors with file:line, column and range",
          "[nn][data][hardening]") {
  // With a header: the label must be an integer in [0, number of class names).
  auto p = write_temp("l1.csv", "2,2,a,b\n1,2,0\n1,2,inf\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()),
                      Contains("l1.csv:3") && Contains("column 3") && Contains("'inf'") && Contains("[0, 2)"));
  p = write_temp("l2.csv", "2,2,a,b\n1,2,0\n1,2,1e19\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("l2.csv:3") && Contains("'1e19'") && Contains("[0, 2)"));
  p = write_temp("l3.csv", "2,2,a,b\n1,2,5\n1,2,0\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("l3.csv:2") && Contains("column 3") && Contains("[0, 2)"));
  p = write_temp("l4.csv", "2,2,a,b\n1,2,-1\n1,2,0\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("l4.csv:2") && Contains("'-1'"));
  // Without a header: labels beyond int64, or infinite, are errors, not casts.
  for (const char* label : {"inf", "1e19", "9.3e18", "nan", "-0.5"}) {
    p = write_temp("l5.csv", fmt::format("1,2,0\n3,4,{}\n", label));
    INFO(label);
    REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("l5.csv:2") && Contains("column 3") &&
                                                  Contains(fmt::format("'{}'", label)));
  }
  // A huge label would make that many class names: bounded, and the bound is in the message.
  p = write_temp("l6.csv", "1,2,0\n3,4,50000000\n");
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("l6.csv:2") && Contains("50000000") && Contains("1024") &&
                                                Contains("header"));
  // Labels up to the bound are fine: a small file may hold only a few of many classes.
  p = write_temp("l7.csv", "1,2,0\n3,4,9\n");
  REQUIRE(read_csv(p.string()).num_classes() == 10);
  // Header counts that are not small integers.
  for (const char* header : {"1e300,2,a,b", "nan,2,a,b", "2,nan,a,b", "2,1e300,a,b", "2.5,2,a,b", "2,inf,a,b"}) {
    p = write_temp("h1.csv", fmt::format("{}\n1,2,0\n1,2,1\n", header));
    INFO(header);
    REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("h1.csv:1") && Contains("header"));
  }
}

TEST_CASE("stratified_split, BatchIterator and Standardizer reject inconsistent data", "[nn][data][hardening]") {
  Dataset d = toy(4, 2);
  // A label outside [0, num_classes) would silently vanish from every split.
  Dataset bad = d;
  bad.labels = from_vector(std::vector<std::int64_t>{0, 0, 0, 0, 1, 1, 1, 7}, Shape{8});
  REQUIRE_THROWS_WITH(stratified_split(bad, 0.25, 0.25, 1),
                      Contains("stratified_split") && Contains("labels[7] = 7") && Contains("2 classes"));
  bad.labels = from_vector(std::vector<std::int64_t>{0, 0, 0, -1, 1, 1, 1, 1}, Shape{8});
  REQUIRE_THROWS_WITH(stratified_split(bad, 0.25, 0.25, 1), Contains("labels[3] = -1"));
  // Features and labels of different lengths.
  Dataset uneven = d;
  uneven.labels = from_vector(std::vector<std::int64_t>{0, 1, 0}, Shape{3});
  REQUIRE_THROWS_WITH(BatchIterator(uneven, 2, true, 1),
                      Contains("BatchIterator") && Contains("8 rows") && Contains("3 labels"));
  REQUIRE_THROWS_WITH(stratified_split(uneven, 0.25, 0.25, 1), Contains("8 rows") && Contains("3 labels"));
  // NaN and infinities would make every standardised value NaN.
  Standardizer st;
  REQUIRE_THROWS_WITH(st.fit(tensor({{1.0, 2.0}, {NAN, 3.0}}, kFloat64)),
                      Contains("Standardizer::fit") && Contains("[1, 0]") && Contains("nan"));
  REQUIRE_THROWS_WITH(st.fit(tensor({{1.0, INFINITY}, {2.0, 3.0}}, kFloat64)),
                      Contains("Standardizer::fit") && Contains("[0, 1]") && Contains("inf"));
  REQUIRE(st.mean().empty());  // nothing fitted
}
