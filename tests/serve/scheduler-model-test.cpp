// The continuous-batching scheduler (serve.h) on the default model, without HTTP:
// - requests submitted together (joining and leaving the batch; a later one sharing the prompt prefix
//   of a finished one) give the text of a session that decodes each alone, greedily (steps below 5
//   rows run the single-step mat-vec: bit-equal);
// - a sink that returns false cancels its request; every page comes back after shutdown;
// - bad requests are refused at submit; a cancel after the scheduler ended is harmless (no hang).
#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/model-files.h"
#include "hashattn/error.h"
#include "hashattn/model.h"
#include "hashattn/serve.h"
#include "hashattn/tokenizer.h"

namespace hashattn::serve {
namespace {

struct collected {
  std::mutex mu;
  std::string text, finish, error;
  int64_t completion = 0, shared = 0, events = 0;
  bool done = false;
};

event_sink sink_into(std::shared_ptr<collected> c, int64_t stop_after = -1) {
  return [c, stop_after](const event& e) {
    std::lock_guard<std::mutex> lk(c->mu);
    if (stop_after >= 0 && c->events >= stop_after) return false;
    c->events++;
    if (e.type == event::kind::text) c->text += e.text;
    if (e.type == event::kind::done) c->finish = e.finish_reason, c->completion = e.completion_tokens, c->shared = e.shared_tokens, c->done = true;
    if (e.type == event::kind::error) c->error = e.error, c->done = true;
    return true;
  };
}

std::string greedy_alone(const model& m, const tokenizer& tok, const std::vector<int32_t>& prompt, int n) {
  session s(m, session_params{1024, 2, 512});
  sampler smp(sampler_params{});
  const float* lg = s.eval(prompt.data(), (int64_t)prompt.size());
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int32_t t = smp.sample(lg, m.hparams().n_vocab);
    out += tok.token_to_piece(t, false);
    if (i + 1 < n) lg = s.eval(&t, 1);
  }
  return out.substr(0, utf8_complete_prefix(out));
}

class SchedulerModel : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(test::require_file(test::model_path()));
    m = model::load(test::model_path());
    tok = tokenizer::from_gguf(m->file());
  }
  std::unique_ptr<model> m;
  std::unique_ptr<tokenizer> tok;
};

TEST_F(SchedulerModel, ConcurrentRequestsGiveTheTextOfEachAlone) {
  const std::string shared =
      "In the quiet harbour town the fishermen mended their nets every evening, talking of the weather and "
      "of the price of fish. ";
  const std::vector<std::string> prompts = {"The capital of France is", "1, 2, 3, 4,", shared + "One evening",
                                            shared + "The youngest of them", "Rivers of Europe:"};
  // Waves: prompts 0-2 (three slots), then 3 (sharing 2's opening) and 4 together.
  scheduler_params sp;
  sp.max_seqs = 3;
  sp.n_ctx = 512;
  sp.n_threads = 2;
  sp.n_batch = 512;
  scheduler sch(*m, *tok, sp);
  const int n = 12;
  std::vector<std::shared_ptr<collected>> got;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (i == 3) sch.drain();  // prompt 3 comes after prompt 2 ended (its pages kept for sharing)
    request r;
    r.prompt = tok->encode(prompts[i], true, false);
    r.max_tokens = n;
    r.ignore_eos = true;
    got.push_back(std::make_shared<collected>());
    sch.submit(std::move(r), sink_into(got.back()));
  }
  sch.drain();
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE("prompt " + std::to_string(i));
    ASSERT_TRUE(got[i]->done);
    EXPECT_EQ(got[i]->error, "");
    EXPECT_EQ(got[i]->finish, "length");
    EXPECT_EQ(got[i]->completion, n);
    EXPECT_EQ(got[i]->text, greedy_alone(*m, *tok, tok->encode(prompts[i], true, false), n));
  }
  EXPECT_GE(got[3]->shared, 16) << "the second request with the shared opening forks the first's pages";
  EXPECT_EQ(got[2]->shared, 0);
  const metrics mt = sch.snapshot();
  EXPECT_EQ(mt.requests_ok, 5);
  EXPECT_GE(mt.steps, n - 1);
  sch.shutdown(true);
  sch.join();
  EXPECT_EQ(sch.snapshot().pages_used, 0) << "every page back";
}

TEST_F(SchedulerModel, SinkThatLeavesCancelsAndLateCancelsAreHarmless) {
  scheduler_params sp;
  sp.max_seqs = 2;
  sp.n_ctx = 512;
  sp.n_threads = 2;
  sp.share_prefix = false;
  scheduler sch(*m, *tok, sp);
  request r;
  r.prompt = tok->encode("A long story:", true, false);
  r.max_tokens = 300;
  r.ignore_eos = true;
  auto c = std::make_shared<collected>();
  const int64_t id = sch.submit(std::move(r), sink_into(c, 3));
  sch.drain();
  metrics mt = sch.snapshot();
  EXPECT_EQ(mt.requests_cancelled, 1);
  EXPECT_EQ(mt.requests_ok, 0);
  EXPECT_EQ(mt.pages_used, 0) << "the cancelled request's pages are free";
  EXPECT_EQ(c->events, 3);
  // Refused at submit.
  request empty;
  EXPECT_THROW(sch.submit(std::move(empty), sink_into(std::make_shared<collected>())), error);
  request zero;
  zero.prompt = {1, 2};
  zero.max_tokens = 0;
  EXPECT_THROW(sch.submit(std::move(zero), sink_into(std::make_shared<collected>())), error);
  request big;
  big.prompt = {1, 2};
  big.max_tokens = 511;
  EXPECT_THROW(sch.submit(std::move(big), sink_into(std::make_shared<collected>())), error) << "over the context";
  sch.shutdown(true);
  sch.join();
  sch.cancel(id);  // after the end: ignored
  sch.drain();     // returns at once
  request late;
  late.prompt = {1, 2};
  EXPECT_THROW(sch.submit(std::move(late), sink_into(std::make_shared<collected>())), error) << "shut down";
}

}  // namespace
}  // namespace hashattn::serve
