/* Cortex-M4F start for QEMU's mps2-an386: vector table, FPU on, then newlib's semihosting _start. */
extern unsigned long _estack;
extern void _start(void);
void Reset_Handler(void) {
  *(volatile unsigned long*)0xE000ED88 |= 0xFUL << 20; /* CPACR: CP10, CP11 full access */
  __asm volatile("dsb; isb");
  _start();
  for (;;) {}
}
void Fault_Handler(void) { for (;;) {} }
__attribute__((section(".isr_vector"), used)) void (*const vectors[16])(void) = {
  (void (*)(void))&_estack, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
};
