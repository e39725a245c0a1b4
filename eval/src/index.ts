/** VQA evaluation: LLaVA-format runs against llm2clip or any OpenAI-compatible server, and official metrics. */
export { runEval, shortUuid, imageDataUrl, type RunOptions, type RunSummary, type RunFailure } from './run.js';
export { BackendError, chatCompletionsUrl, endpointBackend, localBackend, type Backend, type AnswerRequest, type BackendAnswer, type EndpointOptions, type LocalOptions } from './backend.js';
export { scoreTask, scoreVqa, TASKS, type TaskName, type TaskFiles, type TaskResult, type VqaResult } from './score.js';
export { buildExport, writeExport, EXPORT_TASKS, type ExportTask, type ExportResult } from './export.js';
export { vqaQuestionAccuracy, vqaScores, NORMALIZE_MODES, type NormalizeMode, type LeaveOneOut, type VqaItem, type VqaScores } from './vqa.js';
export { processPunctuation, processDigitArticle, vqaNormalize, evalAiAnswerProcessor, CONTRACTIONS, MANUAL_MAP, ARTICLES, PUNCTUATION } from './normalize.js';
export { EvalInputError, readQuestions, readAnswers, type Question, type AnswerRecord, type QuestionId } from './files.js';
export { loadStoredAnswers, answerKey } from './answer-file.js';
export { scoreTextVqa, textVqaAnswerScores, textVqaQuestionFromPrompt } from './tasks/textvqa.js';
export { scoreGqa, gqaPrediction } from './tasks/gqa.js';
export { scorePope, popeAnswerIsYes, popeMetrics } from './tasks/pope.js';
export { scoreScienceQa, sqaParseAnswer } from './tasks/scienceqa.js';
export { scoreMme, mmeParse, readMmeGroundTruth, MME_EVAL_TYPES } from './tasks/mme.js';
