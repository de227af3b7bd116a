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
  REQUIRE_THROWS_WITH(read_csv(p.string()), Contains("label 2 is out of range for 2 classes"));
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
